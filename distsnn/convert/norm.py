"""Normalisation data and activation statistics, computed batch by batch.

Normalisation data may be a numpy array, an array file (``.npy``/``.npz``/``.h5``, read in
chunks with :mod:`distsnn.data.files`), or mlGeNN's form: a list whose first element is an iterable
of ``(x_batch, y_batch)`` pairs, such as a batched ``tf.data.Dataset``. Nothing requires the
whole set in memory: activations are reduced to running maxima and, for percentiles, to a
fixed-size logarithmic histogram per population.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from distsnn.convert.errors import NormDataError

DEFAULT_BATCH_SIZE = 256

# Log2-spaced histogram of positive values: 2^16 bins over [2^-40, 2^40), so a percentile is
# found to within a factor 2^(80/65536), i.e. 0.085 %, whatever the range of the activations.
_LOG2_MIN, _LOG2_MAX, _BINS = -40.0, 40.0, 1 << 16


class NormData:
    """A re-readable source of normalisation examples, yielded as float32 batches."""

    def __init__(self, source: Any, x_name: str = "x", batch_size: int = DEFAULT_BATCH_SIZE):
        if source is None:
            raise NormDataError("normalisation data are required (norm_data=None): give an "
                                "array, an array file (.npz/.npy/.h5) or [batched dataset]")
        if isinstance(source, NormData):
            source = source.source
        self.source, self.x_name, self.batch_size = source, x_name, int(batch_size)
        if isinstance(source, (str, Path)):
            self.description = str(source)
            self._info = _inspect(Path(source), x_name)
        elif isinstance(source, (list, tuple)):
            if not source:
                raise NormDataError("norm_data is an empty list; mlGeNN's form is [dataset]")
            self.description = "dataset"
        elif isinstance(source, np.ndarray):
            self.description = "array"
        elif isinstance(source, Iterable):
            self.description = "dataset"
        else:
            raise NormDataError(f"cannot use a {type(source).__name__} as normalisation data; "
                                f"give an array, an array file or [batched dataset]")

    def batches(self) -> Iterator[np.ndarray]:
        """The inputs, batch by batch (a new pass over the data at each call).

        A list is mlGeNN's form ``[dataset]``; every element is used, in order (mlGeNN reads
        only the first), each being an array, an ``(x, y)`` pair or an iterable of batches.
        """
        source = self.source
        if isinstance(source, (str, Path)):
            yield from self._file_batches(Path(source))
        elif isinstance(source, (list, tuple)):
            for element in source:
                yield from self._batches_of(element)
        else:
            yield from self._batches_of(source)

    def _batches_of(self, source) -> Iterator[np.ndarray]:
        if _array_like(source):
            array = source if isinstance(source, np.ndarray) else np.asarray(source)
            for start in range(0, len(array), self.batch_size):
                yield np.asarray(array[start:start + self.batch_size], np.float32)
        elif isinstance(source, (tuple, list)) and source and _array_like(source[0]):
            yield from self._batches_of(source[0])  # an (x, y) pair
        else:
            for item in source:
                x = item[0] if isinstance(item, (tuple, list)) else item
                yield np.asarray(x, np.float32)

    def _file_batches(self, path: Path) -> Iterator[np.ndarray]:
        from distsnn import data

        n = self._info.n_examples
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            x, _ = data.read_shard(path, start, stop, x_name=self.x_name, y_name=None)
            yield np.asarray(x, np.float32)


def _array_like(value) -> bool:
    return isinstance(value, np.ndarray) or (hasattr(value, "__array__")
                                             and hasattr(value, "shape"))


def _inspect(path: Path, x_name: str):
    from distsnn import data

    try:
        return data.inspect_dataset(path, x_name=x_name, y_name=None)
    except data.DataError as err:
        raise NormDataError(f"normalisation data: {err}") from None


@dataclass
class RunningStat:
    """Maximum of ``relu(values)`` and, optionally, a histogram for a percentile of the
    positive values (as snntoolbox: zeros are left out of the percentile)."""

    with_histogram: bool = False
    maximum: float = 0.0
    count: int = 0
    hist: Optional[np.ndarray] = field(default=None, repr=False)

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float32).reshape(-1)
        positive = values[values > 0]
        if positive.size == 0:
            return
        self.maximum = max(self.maximum, float(positive.max()))
        self.count += int(positive.size)
        if self.with_histogram:
            if self.hist is None:
                self.hist = np.zeros(_BINS, np.int64)
            self.hist += np.bincount(_bin(positive), minlength=_BINS)

    def percentile(self, q: float) -> float:
        """The ``q`` percentile (0-100] of the positive values seen (0 if there were none)."""
        if q >= 100.0 or self.count == 0:
            return self.maximum
        if self.hist is None:
            raise ValueError("no histogram was collected")
        rank = q / 100.0 * (self.count - 1)  # numpy's linear-interpolation position
        low = int(np.floor(rank))
        cumulative = np.cumsum(self.hist)
        lo, hi = self._value_at(cumulative, low), self._value_at(cumulative, low + 1)
        return float(lo + (rank - low) * (hi - lo))

    def _value_at(self, cumulative: np.ndarray, k: int) -> float:
        """The k-th smallest positive value (0-based): its bin's centre, or the maximum."""
        if k >= self.count - 1:
            return self.maximum
        index = int(np.searchsorted(cumulative, k + 1))
        centre = 2.0 ** (_LOG2_MIN + (index + 0.5) * (_LOG2_MAX - _LOG2_MIN) / _BINS)
        return min(centre, self.maximum)


def _bin(values: np.ndarray) -> np.ndarray:
    scaled = (np.log2(values) - _LOG2_MIN) * (_BINS / (_LOG2_MAX - _LOG2_MIN))
    return np.clip(scaled.astype(np.int64), 0, _BINS - 1)


@dataclass
class Statistics:
    """Statistics of every probed value over the normalisation data."""

    values: list  # RunningStat per probe
    input_max: float = 0.0
    input_abs_max: float = 0.0
    input_min: float = 0.0
    num_examples: int = 0


def collect(norm: NormData, input_shape: tuple, probe_fn: Callable[[np.ndarray], Sequence],
            num_probes: int, percentile: float = 100.0,
            prepare: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Statistics:
    """Run ``probe_fn`` on every batch and reduce its outputs to :class:`Statistics`.

    ``prepare`` first brings each batch into the model's layout (see ``Frontend``).
    """
    if not 0.0 < percentile <= 100.0:
        raise NormDataError(f"percentile must be in (0, 100], not {percentile}")
    stats = Statistics([RunningStat(with_histogram=percentile < 100.0)
                        for _ in range(num_probes)])
    first = True
    for x in norm.batches():
        if prepare is not None:
            x = prepare(x)
        if x.ndim == len(input_shape) and tuple(x.shape) == tuple(input_shape):
            x = x[None]
        if x.ndim >= 1 and int(np.prod(x.shape[1:])) == int(np.prod(input_shape)):
            x = x.reshape((len(x),) + tuple(input_shape))  # e.g. flattened images
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise NormDataError(f"normalisation data ({norm.description}) have examples of "
                                f"shape {tuple(x.shape[1:])}, but the model's input has shape "
                                f"{tuple(input_shape)}")
        if len(x) == 0:
            continue
        stats.input_max = float(x.max()) if first else max(stats.input_max, float(x.max()))
        stats.input_min = float(x.min()) if first else min(stats.input_min, float(x.min()))
        stats.input_abs_max = max(stats.input_abs_max, float(np.abs(x).max()))
        first = False
        stats.num_examples += len(x)
        for stat, value in zip(stats.values, probe_fn(x)):
            stat.update(value)
    if stats.num_examples == 0:
        raise NormDataError(f"normalisation data ({norm.description}) contain no examples")
    return stats
