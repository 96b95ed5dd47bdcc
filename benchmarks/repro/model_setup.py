"""Regression check (issue found by the benchmarks, fixed in f6c1c98): building the GeNN
model description costs time on every rank of every run, even with a cached GeNN build; for
the CIFAR-shaped VGG most of it was ``connectivity._compose`` (fused AvgPool->Conv2D
synapses) with ``np.add.at`` and a second pass for first indices.

    .venv/bin/python benchmarks/repro/model_setup.py

Compares distsnn's current ``_compose`` with the original implementation (copied below), with
explicit synapses (``connectivity="sparse"``; the default Toeplitz lowering composes nothing).
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workloads import cifar_vgg  # noqa: E402

from distsnn import connectivity as C  # noqa: E402
from distsnn.genn import CompileOptions, GeNNNetwork  # noqa: E402


def compose_original(a_pre, a_post, a_w, b_pre, b_post, b_w):
    """distsnn's _compose before f6c1c98 (which ran on int64 indices)."""
    a_pre, a_post, b_pre, b_post = (x.astype(np.int64) for x in (a_pre, a_post, b_pre, b_post))
    order = np.argsort(b_pre, kind="stable")
    b_pre, b_post, b_w = b_pre[order], b_post[order], b_w[order]
    n_mid = int(max(a_post.max(initial=-1), b_pre.max(initial=-1))) + 1
    starts = np.searchsorted(b_pre, np.arange(n_mid))
    counts = np.bincount(b_pre, minlength=n_mid)
    reps = counts[a_post]
    pre = np.repeat(a_pre, reps)
    first = np.repeat(starts[a_post], reps)
    offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    idx = first + offset
    post = b_post[idx]
    w = np.repeat(a_w, reps) * b_w[idx]
    key = pre * (int(post.max(initial=0)) + 1) + post
    uniq, inv = np.unique(key, return_inverse=True)
    merged_w = np.zeros(len(uniq), np.float64)
    np.add.at(merged_w, inv, w)
    first_idx = np.zeros(len(uniq), np.int64)
    first_idx[inv[::-1]] = np.arange(len(inv))[::-1]
    return pre[first_idx], post[first_idx], merged_w.astype(np.float32)


def best(fn, n=3):
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


net = cifar_vgg("rate")
conn = net.connections[2]     # conv2 -> conv3: AvgPoolConv2D
assert isinstance(conn.connectivity, C.AvgPoolConv2D)
t_init, _ = best(lambda: GeNNNetwork(net, CompileOptions(mode="rate", example_timesteps=100,
                                                        connectivity="sparse")), 2)
t_cur, cur = best(lambda: conn.connectivity.synapses(conn.source.shape))
current = C._compose
C._compose = compose_original
try:
    t_old, old = best(lambda: conn.connectivity.synapses(conn.source.shape))
    t_init_old, _ = best(lambda: GeNNNetwork(net, CompileOptions(
        mode="rate", example_timesteps=100, connectivity="sparse")), 2)
finally:
    C._compose = current
same = all(np.array_equal(a, b) for a, b in zip(cur, old))
print(f"GeNNNetwork(...) for the VGG: {t_init:.3f} s with distsnn's _compose, {t_init_old:.3f} s "
      f"with the original one")
print(f"AvgPoolConv2D.synapses ({len(cur[0]):,} synapses): {t_cur:.3f} s now, {t_old:.3f} s "
      f"originally; identical result: {same}")
