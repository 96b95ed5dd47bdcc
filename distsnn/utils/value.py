"""mlGeNN's value predicates (``ml_genn.utils.value``): how a parameter was given."""
from __future__ import annotations

from collections.abc import Sequence
from numbers import Number

import numpy as np


def is_value_constant(value) -> bool:
    """A single number (one value for every neuron or synapse)."""
    return isinstance(value, Number)


def is_value_array(value) -> bool:
    """A sequence or array (one value per neuron or synapse)."""
    return isinstance(value, (Sequence, np.ndarray))
