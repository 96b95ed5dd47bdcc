"""Input encodings and readouts of the rate-coded converters (mlGeNN's ``InputType``), and the
activation kinds every front-end recognises."""
from __future__ import annotations

from enum import Enum

#: Activation kinds; any other activation is described by its name.
LINEAR, RELU, SOFTMAX = "linear", "relu", "softmax"


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
