"""Spike counts from recorded spike trains."""
from __future__ import annotations

import numpy as np


def counts_by_step(times: np.ndarray, ids: np.ndarray, size: int, steps: int) -> np.ndarray:
    """``counts[t, i]``: spikes of neuron i at steps <= t - 1 (rows 0 .. steps: before the
    first step, then after each)."""
    counts = np.zeros((steps + 1, size), np.int64)
    for t in range(steps):
        counts[t + 1] = np.bincount(ids[times <= t].astype(np.int64), minlength=size)
    return counts
