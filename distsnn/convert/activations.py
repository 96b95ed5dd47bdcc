"""Recognise activation functions by what they compute, whatever their spelling.

``"relu"``, ``keras.activations.relu``, ``keras.ops.relu``, ``tf.nn.relu`` or a ReLU layer
used as an activation are all ReLU; ``"relu6"`` or any ``min(max(x, 0), m)`` is a clipped
ReLU (:func:`~distsnn.convert.enums.clipped_relu`); a leaky ReLU is neither.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distsnn.convert._backend import keras, to_numpy
from distsnn.convert.enums import LINEAR, RELU, SOFTMAX, clipped_relu

_PROBE = np.array([[-1e6, -37.5, -3.5, -1.0, -0.25, -1e-3, 0.0, 1e-3, 0.25, 0.5, 1.0, 3.5, 6.5,
                    37.5, 1e6]], np.float32)
_SOFTMAX_PROBE = np.array([[-2.0, -0.5, 0.0, 0.75, 1.5, 3.0]], np.float32)


def activation_kind(fn: Any) -> str:
    """``"linear"``, ``"relu"``, ``"softmax"`` or a readable name of any other activation."""
    if fn is None:
        return LINEAR
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if _computes(fn, _PROBE, _PROBE):
        return LINEAR
    if _computes(fn, _PROBE, np.maximum(_PROBE, 0.0)):
        return RELU
    top = _clip_top(fn)
    if top is not None:
        return clipped_relu(top)
    exp = np.exp(_SOFTMAX_PROBE - _SOFTMAX_PROBE.max())
    if _computes(fn, _SOFTMAX_PROBE, exp / exp.sum()):
        return SOFTMAX
    return str(name)


def _clip_top(fn) -> "float | None":
    """``m`` if ``fn`` computes ``min(max(x, 0), m)`` with ``0 < m < 1e6`` (on the probe)."""
    try:
        top = float(to_numpy(fn(keras.ops.convert_to_tensor(_PROBE))).max())
    except Exception:  # noqa: BLE001 - an activation we cannot call is "other"
        return None
    if not 0.0 < top < 1e6 or not _computes(fn, _PROBE, np.clip(_PROBE, 0.0, top)):
        return None
    return top


def _computes(fn, x: np.ndarray, expected: np.ndarray) -> bool:
    try:
        y = to_numpy(fn(keras.ops.convert_to_tensor(x)))
    except Exception:  # noqa: BLE001 - an activation we cannot call is "other"
        return False
    return y.shape == expected.shape and bool(np.allclose(y, expected, rtol=1e-5, atol=1e-6))


def relu_layer_kind(layer) -> str:
    """``"relu"`` for a plain ``keras.layers.ReLU``, a clipped ReLU for ``ReLU(max_value=m)``
    (m > 0), else a description of its parameters."""
    plain = float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0
    if plain and layer.max_value is not None and float(layer.max_value) > 0.0:
        return clipped_relu(float(layer.max_value))
    extras = []
    if layer.max_value is not None:
        extras.append(f"max_value={float(layer.max_value):g}")
    if float(layer.negative_slope) != 0.0:
        extras.append(f"negative_slope={float(layer.negative_slope):g}")
    if float(layer.threshold) != 0.0:
        extras.append(f"threshold={float(layer.threshold):g}")
    return RELU if not extras else f"ReLU({', '.join(extras)})"
