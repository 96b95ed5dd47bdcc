"""Spike-train datasets (mlGeNN's ``ml_genn.utils.data``): one :class:`PreprocessedSpikes`
per example, given to a :class:`~distsnn.neurons.SpikeInput` population as a list wherever
arrays are given to other inputs (``evaluate``, ``predict``; sharded across ranks the same way).
"""
from __future__ import annotations

from collections import namedtuple
from typing import Optional, Sequence

import numpy as np

#: One example's spikes: ``end_spikes[i]`` is the exclusive end of neuron i's spikes in
#: ``spike_times`` (the cumulative spike count of neurons 0..i); ``spike_times`` [ms from the
#: example's start] are ordered by neuron, then by time.
PreprocessedSpikes = namedtuple("PreprocessedSpikes", ["end_spikes", "spike_times"])


def preprocess_spikes(times: np.ndarray, ids: np.ndarray, num_neurons: int) -> PreprocessedSpikes:
    """An example's spikes, given as (time, neuron id) pairs in any order."""
    times, ids = np.asarray(times), np.asarray(ids)
    if times.shape != ids.shape or times.ndim != 1:
        raise ValueError(f"preprocess_spikes: times and ids must be 1-D and of one length, not "
                         f"shapes {times.shape} and {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_neurons):
        raise ValueError(f"preprocess_spikes: neuron ids must lie in 0..{num_neurons - 1}, not "
                         f"{ids.min()}..{ids.max()}")
    end_spikes = np.cumsum(np.bincount(ids.astype(np.int64), minlength=num_neurons))
    return PreprocessedSpikes(end_spikes, times[np.lexsort((times, ids))])


def calc_max_spikes(spikes: Sequence[PreprocessedSpikes]) -> int:
    """The largest number of spikes of any one example."""
    return max(len(p.spike_times) for p in spikes)


def calc_latest_spike_time(spikes: Sequence[PreprocessedSpikes]) -> float:
    """The time of the latest spike of any example."""
    return max(float(np.max(p.spike_times, initial=-np.inf)) for p in spikes)


def linear_latency_encode_data(data: np.ndarray, max_time: float, min_time: float = 0.0,
                               thresh: int = 1) -> list[PreprocessedSpikes]:
    """One spike per value ``> thresh`` of flattened uint8 examples, at
    ``(255 - x) / 255 * (max_time - min_time) + min_time``."""
    out = []
    for example in np.asarray(data):
        fires = example > thresh
        times = (255.0 - example[fires]) / 255.0 * (max_time - min_time) + min_time
        out.append(PreprocessedSpikes(np.cumsum(fires), times))
    return out


def log_latency_encode_data(data: np.ndarray, tau_eff: float,
                            thresh: float) -> list[PreprocessedSpikes]:
    """One spike per value ``x > thresh`` of flattened examples, at
    ``tau_eff * log(x / (x - thresh))``."""
    out = []
    for example in np.asarray(data):
        fires = example > thresh
        x = example[fires].astype(np.float64)
        out.append(PreprocessedSpikes(np.cumsum(fires), tau_eff * np.log(x / (x - thresh))))
    return out


def batch_spikes(spikes: Sequence[PreprocessedSpikes], batch_size: int,
                 num_neurons: Optional[int] = None, name: str = "spike input"
                 ) -> PreprocessedSpikes:
    """A batch's examples as one: ``spike_times`` concatenated in example order and
    ``end_spikes`` of shape ``(batch_size, neurons)`` indexing into them; lanes past the last
    example hold no spikes."""
    spikes = list(spikes)
    if not all(isinstance(s, PreprocessedSpikes) for s in spikes):
        bad = next(type(s).__name__ for s in spikes if not isinstance(s, PreprocessedSpikes))
        raise TypeError(f"{name}: a SpikeInput takes a list of PreprocessedSpikes (one per "
                        f"example), not {bad}; see distsnn.utils.data.preprocess_spikes")
    if len(spikes) > batch_size:
        raise ValueError(f"{name}: {len(spikes)} examples do not fit a batch of {batch_size}")
    sizes = {len(s.end_spikes) for s in spikes} | ({num_neurons} if num_neurons else set())
    if len(sizes) > 1:
        raise ValueError(f"{name}: every example's end_spikes must have one entry per neuron "
                         f"({num_neurons or 'the same number'}); got lengths "
                         f"{sorted(len(s.end_spikes) for s in spikes)}")
    counts = [len(s.spike_times) for s in spikes]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    neurons = num_neurons or (len(spikes[0].end_spikes) if spikes else 0)
    end = np.full((batch_size, neurons), offsets[-1], np.int64)
    for lane, (example, offset) in enumerate(zip(spikes, offsets)):
        end[lane] = np.asarray(example.end_spikes, np.int64) + offset
    times = (np.concatenate([np.asarray(s.spike_times, np.float32) for s in spikes])
             if spikes else np.zeros(0, np.float32))
    return PreprocessedSpikes(end, times)


def calc_start_spikes(end_spikes: np.ndarray) -> np.ndarray:
    """Each neuron's first spike index, from the end indices (1-D, or per lane as from
    :func:`batch_spikes`): the previous neuron's end, continuing across lanes."""
    end = np.asarray(end_spikes)
    flat = end.reshape(-1)
    return np.concatenate([[0], flat[:-1]]).astype(end.dtype).reshape(end.shape)


def is_spike_trains(data) -> bool:
    """Whether ``data`` is a sequence of PreprocessedSpikes (one per example)."""
    return (isinstance(data, (list, tuple)) and not isinstance(data, PreprocessedSpikes)
            and len(data) > 0 and isinstance(data[0], PreprocessedSpikes))


def as_examples(data):
    """A batch or dataset as an array, or as a list when it holds PreprocessedSpikes."""
    if isinstance(data, PreprocessedSpikes):
        raise TypeError("a single PreprocessedSpikes was given as a dataset: pass a list of "
                        "PreprocessedSpikes, one per example")
    return list(data) if is_spike_trains(data) else np.asarray(data)


def take_rows(data, start: int, stop: int):
    """Examples ``[start, stop)`` of an array (as an array) or of a list of
    PreprocessedSpikes (as a list)."""
    return as_examples(data if isinstance(data, PreprocessedSpikes) else data[start:stop])


__all__ = ["PreprocessedSpikes", "as_examples", "batch_spikes", "calc_latest_spike_time",
           "calc_max_spikes", "calc_start_spikes", "linear_latency_encode_data",
           "log_latency_encode_data", "preprocess_spikes", "take_rows"]
