"""Input encodings and readouts of the rate-coded converters (mlGeNN's ``InputType``), and the
activation kinds every front-end recognises."""
from __future__ import annotations

import re
from enum import Enum
from typing import Optional

#: Activation kinds; any other activation is described by its name.
LINEAR, RELU, SOFTMAX = "linear", "relu", "softmax"
_CLIPPED = re.compile(r"clipped_relu\(max=(.+)\)")


def clipped_relu(max_value: float) -> str:
    """The kind of ``min(max(x, 0), max_value)`` (ReLU6, Keras ``ReLU(max_value=)``, ONNX
    ``Clip(0, m)``); the value round-trips exactly (:func:`clip_value`)."""
    return f"clipped_relu(max={float(max_value)!r})"


def clip_value(kind: Optional[str]) -> Optional[float]:
    """The clip value of a :func:`clipped_relu` kind, None for any other kind."""
    match = _CLIPPED.fullmatch(kind) if isinstance(kind, str) else None
    return float(match.group(1)) if match else None


class InputType(Enum):
    """How the analogue input reaches the first weighted layer."""

    IF = "if"            #: integrate-and-fire neurons driven by a constant current x
    POISSON = "poisson"  #: Poisson spikes with rate x spikes per timestep
    SPIKE = "spike"      #: a spike every timestep where x > 0
    ANALOG = "analog"    #: no input spikes: the first layer receives the current W x + b


class Readout(Enum):
    """How the output layer is read out."""

    SPIKES = "spikes"  #: integrate-and-fire outputs; the prediction is the most spikes
    ANALOG = "analog"  #: non-spiking outputs; the prediction is the largest mean input
