"""Time-varying inputs of NIR networks: spike rasters and event lists.

A raster is ``x[N, T, ...]`` in the source tool's channels-first layout (bool, or uint8
counts: a count c > 1 is one event of weight c, as Sinabs' several spikes per step). Event
lists are one structured array of all events (fields ``x``, ``y``, ``t``, ``p`` and
``example``) plus per-example offsets; :func:`bin_events` turns them into rasters of frames
of a given length. A network's raster input takes channels-last frames:
:func:`raster_to_network` changes the layout.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distsnn.data.files import DataError, read_shard
from distsnn.errors import UserError
from distsnn.network import Network
from distsnn.nir_neurons import RasterInput

EVENT_FIELDS = ("x", "y", "t", "p", "example")


class RasterError(UserError, ValueError):
    """Raster or event data that do not fit the network."""


def is_raster_network(network: Network) -> bool:
    return len(network.inputs) == 1 and isinstance(network.inputs[0].neuron, RasterInput)


def source_shape(network: Network) -> tuple[int, ...]:
    """The input shape in the source tool's layout (as the NIR file states it)."""
    return tuple(network.metadata.get("nir", {}).get("input_shape")
                 or network.inputs[0].shape)


def raster_to_network(x: np.ndarray, network: Network, where: str = "the data") -> np.ndarray:
    """Rasters ``[N, T, *source shape]`` as float32 ``[N, T, *input shape]`` (channels last)."""
    shape = source_shape(network)
    x = np.asarray(x)
    if x.ndim < 2 or int(np.prod(x.shape[2:])) != int(np.prod(shape)):
        raise RasterError(f"{where}: rasters of shape {x.shape[1:]} do not fit the NIR input "
                          f"{shape}: give x as [examples, steps, {', '.join(map(str, shape))}]")
    x = x.reshape(x.shape[:2] + shape).astype(np.float32)
    if len(shape) == 3:
        x = np.moveaxis(x, 2, -1)
    elif len(shape) == 2:
        x = np.swapaxes(x, 2, 3)[:, :, None]
    return np.ascontiguousarray(x.reshape(x.shape[:2] + tuple(network.inputs[0].shape)))


def check_raster_dtype(dtype: np.dtype, where: str) -> None:
    """Rasters are bool or unsigned counts (or floats of event weights)."""
    if np.dtype(dtype).kind not in "buf":
        raise RasterError(f"{where}: rasters must be bool, unsigned counts (uint8) or floats, "
                          f"not {np.dtype(dtype)}")


def bin_events(events: np.ndarray, offsets: np.ndarray, shape: tuple,
               frame: float, steps: int) -> np.ndarray:
    """Event lists as rasters ``[N, steps, C, H, W]``: event ``(x, y, t, p)`` of example i
    (events ``offsets[i]:offsets[i + 1]``) counts in frame ``floor(t / frame)`` at
    ``[p, y, x]``; events past the last frame are dropped."""
    missing = [f for f in EVENT_FIELDS[:4] if f not in (events.dtype.names or ())]
    if missing:
        raise RasterError(f"event lists need fields {EVENT_FIELDS[:4]} (structured array), "
                          f"missing {missing}")
    if frame <= 0:
        raise RasterError(f"the frame length must be positive, not {frame}")
    n = len(offsets) - 1
    out = np.zeros((n, steps) + tuple(shape), np.uint8)
    for i in range(n):
        e = events[offsets[i]:offsets[i + 1]]
        f = np.floor(np.asarray(e["t"], np.float64) / frame).astype(np.int64)
        keep = (f >= 0) & (f < steps)
        np.add.at(out[i], (f[keep], e["p"][keep].astype(np.int64),
                           e["y"][keep].astype(np.int64), e["x"][keep].astype(np.int64)), 1)
    return out


@dataclass(frozen=True)
class EventInfo:
    """An event-list file: its examples and the rasters they bin into."""

    path: Path
    n_examples: int
    x_shape: tuple  # (steps, C, H, W) of one binned example
    x_dtype: np.dtype
    frame: float
    x_name: str = "events"
    y_name: str = "y"


def _read(path, name: str, start: int, stop: int) -> np.ndarray:
    return read_shard(path, start, stop, x_name=name, y_name=None)[0]


def inspect_events(path, shape: tuple[int, int, int], frame: float,
                   frames: int | None = None, chunk: int = 1 << 20) -> EventInfo:
    """Read the offsets (and, without ``frames``, scan the times in chunks for the latest
    event) of an event file with arrays ``events``, ``offsets`` and ``y``."""
    from distsnn.data.files import inspect_dataset
    if frame is None or not frame > 0:
        raise RasterError(f"{path}: event lists need a positive --frame-length (in the unit of "
                          f"their t field), not {frame!r}")
    info = inspect_dataset(path, "offsets", None)
    offsets = _read(path, "offsets", 0, info.n_examples).astype(np.int64)
    events = inspect_dataset(path, "events", None)
    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) \
            or offsets[-1] != events.n_examples:
        raise DataError(f"{path}[offsets] must rise from 0 to the {events.n_examples} events, "
                        f"one entry per example plus one")
    names = events.x_dtype.names or ()
    missing = [f for f in EVENT_FIELDS if f not in names]
    if missing:
        raise DataError(f"{path}[events] must be a structured array with fields "
                        f"{', '.join(EVENT_FIELDS)}; missing {', '.join(missing)}")
    n = len(offsets) - 1
    labels = inspect_dataset(path, "y", None)
    if labels.n_examples != n:
        raise DataError(f"{path}: y has {labels.n_examples} labels for {n} examples")
    if frames is None:
        latest = 0.0
        for a in range(0, events.n_examples, chunk):
            t = _read(path, "events", a, min(a + chunk, events.n_examples))["t"]
            latest = max(latest, float(np.max(t, initial=0)))
        frames = int(np.floor(latest / frame)) + 1
    return EventInfo(Path(path), n, (int(frames),) + tuple(shape), np.dtype(np.uint8),
                     float(frame))


def iter_event_rows(info: EventInfo, ranges: list[tuple[int, int]], chunk: int
                    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(first_example, rasters, labels)`` for the examples of ``ranges``, ``chunk`` at a
    time; only those examples' events are read."""
    offsets = _read(info.path, "offsets", 0, info.n_examples + 1).astype(np.int64)
    for start, stop in ranges:
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            events = _read(info.path, "events", int(offsets[a]), int(offsets[b]))
            owner = np.repeat(np.arange(a, b), np.diff(offsets[a:b + 1]))
            if np.any(events["example"] != owner):
                bad = int(owner[np.flatnonzero(events["example"] != owner)[0]])
                raise DataError(f"{info.path}: the events of example {bad} are not where "
                                f"offsets puts them (their example field differs)")
            x = bin_events(events, offsets[a:b + 1] - offsets[a], info.x_shape[1:],
                           info.frame, info.x_shape[0])
            yield a, x, _read(info.path, "y", a, b).reshape(-1)
