"""Input layouts: distsnn's networks take channels-last images; ONNX models channels-first.

A network converted from a channels-first (NCHW) model records ``input_layout:
"channels_first"`` in its metadata; :func:`to_network_layout` turns examples in the model's
layout (or already in the network's) into the network input's shape.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from distsnn.network import Network

CHANNELS_FIRST = "channels_first"


def channels_first_shape(shape: tuple) -> tuple:
    """``(C, H, W)`` for a channels-last ``(H, W, C)`` shape."""
    return (shape[-1],) + tuple(shape[:-1])


def to_network_layout(x: np.ndarray, network: "Network") -> np.ndarray:
    """Examples ``(N, ...)`` as float32 arrays of the network input's shape.

    For a network from a channels-first model, examples of the model's shape ``(C, H, W)``
    (or flattened from it) are transposed to ``(H, W, C)``; examples already of shape
    ``(H, W, C)`` are kept (when both shapes are equal the model's layout wins). Otherwise
    examples are reshaped in C order.
    """
    shape = tuple(network.inputs[0].shape)
    x = np.asarray(x, np.float32)
    if network.metadata.get("input_layout") != CHANNELS_FIRST or len(shape) != 3:
        return x.reshape((len(x),) + shape)
    model_shape = channels_first_shape(shape)
    if tuple(x.shape[1:]) == shape and shape != model_shape:
        return x
    return np.ascontiguousarray(np.moveaxis(x.reshape((len(x),) + model_shape), 1, -1))
