"""Exact few-spike codes in numpy: what the GeNN models must decode to, and their spikes."""
from __future__ import annotations

import numpy as np


def _steps(magnitude: np.ndarray, rounding: str) -> np.ndarray:
    """Whole steps of ``magnitude`` (in steps): floored, or rounded half away from zero."""
    return np.floor(magnitude + (0.5 if rounding == "nearest" else 0.0))


def quantise_unsigned(x, k: int, alpha: float, rounding: str = "floor") -> np.ndarray:
    """``min(steps(max(x, 0) / S) S, alpha (1 - 2^-K))`` with S = alpha 2^-K."""
    x = np.asarray(x, np.float32).astype(np.float64)
    scale = alpha * 2.0 ** -k
    q = _steps(np.maximum(x, 0.0) / scale, rounding) * scale
    return np.minimum(q, alpha * (1 - 2.0 ** -k))


def quantise_signed(x, k: int, alpha: float, rounding: str = "floor") -> np.ndarray:
    """Signed code (even K): S = alpha 2^-(K/2), ``sign(x) min(steps(|x| / S), 2^(K/2) - 1) S``
    (floor truncates toward zero)."""
    x = np.asarray(x, np.float32).astype(np.float64)
    scale = alpha * 2.0 ** -(k // 2)
    steps = np.minimum(_steps(np.abs(x) / scale, rounding), 2 ** (k // 2) - 1)
    return np.sign(x) * steps * scale


def code_spikes(q, scale) -> np.ndarray:
    """Number of spikes of the binary code of q (= set bits of |q| / scale)."""
    m = np.rint(np.abs(np.asarray(q)) / scale).astype(np.int64)
    return np.array([bin(int(v)).count("1") for v in m.reshape(-1)]).reshape(m.shape)


def values_and_edges(rng, n, low, high, scale, extra) -> np.ndarray:
    """Random values plus exact multiples of the LSB, values just below them and extras."""
    v = rng.uniform(low, high, n - 3 * len(extra))
    multiples = rng.integers(int(low / scale), int(high / scale), len(extra)) * scale
    below = np.nextafter(multiples.astype(np.float32), np.float32(-np.inf))
    return np.concatenate([v, multiples, below, extra]).astype(np.float32)
