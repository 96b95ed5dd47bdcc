"""Time-varying inputs of NIR networks: spike rasters and event lists.

A raster is ``x[N, T, ...]`` in the source tool's channels-first layout (bool, or uint8
counts: a count c > 1 is one event of weight c, as Sinabs' several spikes per step). Event
lists are one structured array of all events (fields ``x``, ``y``, ``t``, ``p`` and
``example``) plus per-example offsets; :func:`bin_events` turns them into rasters of frames
of a given length. A network's raster input takes channels-last frames:
:func:`raster_to_network` changes the layout.
"""
from __future__ import annotations

import numpy as np

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


def bin_events(events: np.ndarray, offsets: np.ndarray, shape: tuple[int, int, int],
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
