"""Regression check (issue found by the benchmarks, fixed in 98f4a84): the GeNN seed was
compiled into the model code but was not part of distsnn's model name.

    .venv/bin/python benchmarks/repro/seed_build.py

Before 98f4a84: (1) with the library's default ``rng_seed=0`` every run drew a new seed, so
GeNN's model.sha changed and the model was regenerated and recompiled on *every* run, even for
a network without randomness; (2) only a node's local rank 0 built, the other ranks loaded its
code with rank 0's seed compiled in, so every rank drew the same Poisson stream although
``derive_seed`` gave them distinct seeds. 98f4a84 builds with a fixed GeNN seed and draws
Poisson inputs from a hash of (base seed, example index, neuron, step).

This script checks (1): three runs with rng_seed=0 must reuse the first build.
"""
import shutil
import tempfile

import numpy as np

from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, PoissonInput

net = Network()
a = net.add_population("input", (50,), PoissonInput())
b = net.add_population("output", (10,), IntegrateFire(v_thresh=3.0, readout="spike_count"))
net.connect(a, b, Dense(np.random.default_rng(0).random((50, 10)).astype(np.float32)))
net.outputs = [b]
build = tempfile.mkdtemp(prefix="distsnn-seed-")
reused = []
try:
    for run in range(3):
        compiled = InferenceCompiler(20, backend="cpu", build_dir=build).compile(net)  # rng_seed=0
        with compiled:
            info = compiled.build_info
            reused.append(info.reused)
            print(f"run {run}: rng_seed=0 -> base seed {compiled.base_seed}, build "
                  f"{info.build_s:.2f} s, reused={info.reused}")
finally:
    shutil.rmtree(build, ignore_errors=True)
print("FIXED: later runs reuse the build" if all(reused[1:]) else
      "PRESENT: every run with rng_seed=0 regenerates and recompiles the model")
