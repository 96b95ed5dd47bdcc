"""Regression check (issue found by the benchmarks, fixed in f6c1c98): the end-of-run spike
statistics (``synaptic_operations``) lowered every connection to explicit synapses a second
time just to count each neuron's fan-out: ~0.4-0.6 s per rank per run for the CIFAR-shaped
VGG, inside the "reduction" phase. Now the GeNN builder primes the fan-out from the SPARSE
lowering and all-to-all (DENSE) connections need no synapses.

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

try:
    from distsnn import statistics as stats_module  # since f6c1c98
except ImportError:  # pragma: no cover - older layout
    from distsnn import simulation as stats_module
from distsnn.genn import CompileOptions, GeNNNetwork  # noqa: E402
from distsnn.connectivity import Dense  # noqa: E402
from distsnn.network import Network  # noqa: E402
from distsnn.neurons import IntegrateFire, IntegrateFireInput  # noqa: E402
from workloads import cifar_vgg  # noqa: E402

net = cifar_vgg("rate")
GeNNNetwork(net, CompileOptions(mode="rate", example_timesteps=100))   # what a run does first
t0 = time.perf_counter()
fan = [stats_module.fan_out(c) for c in net.connections]
t_after_build = time.perf_counter() - t0
stats_module._FAN_OUT.clear()
t0 = time.perf_counter()
fan_cold = [stats_module.fan_out(c) for c in net.connections]
t_cold = time.perf_counter() - t0
same = all(np.array_equal(x, y) for x, y in zip(fan, fan_cold))
print(f"fan-out of the VGG's connections after the model was built: {1e3 * t_after_build:.1f} ms "
      f"(cold cache: {1e3 * t_cold:.0f} ms; identical: {same})")
print("FIXED" if t_after_build < 0.05 else "PRESENT: the statistics recompute the synapses")


def make(n_out):
    n = Network()
    a = n.add_population("a", (4,), IntegrateFireInput())
    b = n.add_population("b", (n_out,), IntegrateFire())
    return n, n.connect(a, b, Dense(np.ones((4, n_out), np.float32)))


stats_module._FAN_OUT.clear()
stale = None
for i in range(200):
    n, conn = make(3 + i)
    got = stats_module.fan_out(conn)
    if got[0] != 3 + i:
        stale = (i, got.tolist())
        break
    del n, conn
    gc.collect()
print("stale id()-keyed fan-out: " + ("FIXED (never served)" if stale is None else
                                      f"PRESENT: network {stale[0]} got {stale[1]}"))
