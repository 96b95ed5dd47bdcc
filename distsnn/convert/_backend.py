"""The one place distsnn imports Keras (Keras 3 on TensorFlow), quietly."""
from __future__ import annotations

import os

import numpy as np

from distsnn.utils.console import quiet_output, verbose

if not verbose():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
with quiet_output("importing TensorFlow/Keras"):  # its C++ start-up lines
    import keras

__all__ = ["keras", "to_numpy"]


def to_numpy(value) -> np.ndarray:
    """A Keras variable or backend tensor as a float32 numpy array."""
    if hasattr(value, "numpy"):  # Keras variables and TF eager tensors
        value = value.numpy()
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float32)
