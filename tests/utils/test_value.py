"""mlGeNN's value predicates (``distsnn.utils.value``): a constant or one value per element."""
from __future__ import annotations

import numpy as np
import pytest

from distsnn.utils.value import is_value_array, is_value_constant


@pytest.mark.parametrize("value, constant, array", [
    (1, True, False), (0.5, True, False), (np.float32(2.0), True, False),
    ([1.0, 2.0], False, True), ((1, 2), False, True), (np.zeros(3), False, True),
    (None, False, False), ("relu", False, True),  # a str is a Sequence, as in mlGeNN
])
def test_value_kinds(value, constant, array):
    assert is_value_constant(value) is constant
    assert is_value_array(value) is array
