"""A small CNN trained on scikit-learn's bundled digits: the demo's and tests' model.

Trains in seconds on a CPU, deterministically for a given seed, with biases and
BatchNormalization (which the converter folds), and average pooling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DigitsData:
    x_train: np.ndarray  # (N, 8, 8, 1) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> DigitsData:
    """Digits scaled to [0, 1], shuffled and split with a fixed seed."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(test_fraction * len(x)))
    return DigitsData(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


def train_digits_cnn(data: DigitsData, seed: int = 0, epochs: int = 15, pooling: str = "avg"):
    """Conv(16)+BN+ReLU, Pool, Conv(32)+ReLU, Pool, Flatten, Dense(64)+ReLU, Dense(10); the
    pools average (``pooling="avg"``, the demo's) or take the maximum (``"max"``).

    Returns the trained Keras model and its test accuracy.
    """
    from distsnn.convert._backend import keras
    pool = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}[pooling]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        pool(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        pool(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=epochs, verbose=0)
    logits = model.predict(data.x_test, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    return model, accuracy
