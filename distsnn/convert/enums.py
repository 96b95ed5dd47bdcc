"""Input encodings of the rate-coded converters (mlGeNN's ``InputType``)."""
from __future__ import annotations

from enum import Enum


class InputType(Enum):
    """How the analogue input is turned into spikes."""

    IF = "if"            #: integrate-and-fire neurons driven by a constant current x
    POISSON = "poisson"  #: Poisson spikes with rate x spikes per timestep
    SPIKE = "spike"      #: a spike every timestep where x > 0
