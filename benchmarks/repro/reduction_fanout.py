"""Regression check (issue found by the benchmarks, fixed in f6c1c98, then made moot): the
end-of-run spike statistics (``synaptic_operations``) lowered every connection to explicit
synapses a second time just to count each neuron's fan-out: ~0.4-0.6 s per rank per run for
the CIFAR-shaped VGG, inside the "reduction" phase. Since the Toeplitz lowering the events are
computed from each connection's kernel geometry (per-axis route counts, cached per geometry)
without any synapse or per-neuron fan-out array; journaled runs read them after every chunk.

    .venv/bin/python benchmarks/repro/reduction_fanout.py

(A second issue, a fan-out cache keyed by id() that served a freed connectivity's entry to a
new one, i.e. wrong synaptic operations, was fixed in 30a14de; also checked here.)
"""
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workloads import cifar_vgg  # noqa: E402

from distsnn.compilers.statistics import SpikeStats  # noqa: E402
from distsnn.connectivity import Dense  # noqa: E402
from distsnn.network import Network  # noqa: E402
from distsnn.neurons import IntegrateFire, IntegrateFireInput  # noqa: E402

net = cifar_vgg("rate")
rng = np.random.default_rng(0)
stats = SpikeStats(1, 100, {p.name: rng.integers(0, 20, p.size) for p in net.populations})
t0 = time.perf_counter()
stats.synaptic_operations(net)
t_cold = time.perf_counter() - t0
t0 = time.perf_counter()
stats.synaptic_operations(net)
t_warm = time.perf_counter() - t0
print(f"synaptic operations of the VGG: {1e3 * t_cold:.1f} ms (again: {1e3 * t_warm:.1f} ms)")
print("FIXED" if t_warm < 0.05 else "PRESENT: the statistics recompute the synapses")


def make(n_out):
    n = Network()
    a = n.add_population("a", (4,), IntegrateFireInput())
    b = n.add_population("b", (n_out,), IntegrateFire())
    n.connect(a, b, Dense(np.ones((4, n_out), np.float32)))
    return n


stale = None
for i in range(200):
    n = make(3 + i)
    got = SpikeStats(1, 1, {"a": np.ones(4, np.int64)}).synaptic_operations(n)
    if got != 4 * (3 + i):
        stale = (i, got)
        break
    del n
    gc.collect()
print("stale id()-keyed fan-out: " + ("FIXED (never served)" if stale is None else
                                      f"PRESENT: network {stale[0]} got {stale[1]}"))
