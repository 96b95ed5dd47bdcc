"""Repro: GeNN preferences passed through ``genn_kwargs`` (e.g. ``optimize_code``) are not part
of distsnn's model name, and GeNN's model.sha does not hash them either, so changing one and
building into an existing build directory silently *reuses* the old build: here a model
asked for with ``optimize_code=False`` runs the -O3 code built before (and vice versa, which
before f6c1c98 meant that asking for ``optimize_code=True`` kept the -O0 build).

    .venv/bin/python benchmarks/repro/genn_kwargs_cache.py

Proposed fix (benchmarks/repro/proposed.patch): add a short hash of the sorted genn_kwargs to
``CompileOptions.signature()``.
"""
import shutil
import tempfile
from pathlib import Path

import numpy as np

from distsnn.connectivity import Dense
from distsnn.genn import CompileOptions, GeNNNetwork
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, IntegrateFireInput

net = Network()
a = net.add_population("input", (3,), IntegrateFireInput())
b = net.add_population("output", (2,), IntegrateFire(readout="spike_count"))
net.connect(a, b, Dense(np.ones((3, 2), np.float32)))
net.outputs = [b]
build = tempfile.mkdtemp(prefix="distsnn-kwargs-")
try:
    results = []
    for kwargs in ({}, {"optimize_code": False}):
        g = GeNNNetwork(net, CompileOptions(mode="rate", example_timesteps=10, genn_kwargs=kwargs))
        info = g.build_and_load(build)
        code = Path(build) / f"{g.model_name}_CODE"
        lib = code / "librunner.so"
        results.append((g.model_name, lib.stat().st_mtime_ns))
        flags = next(l for l in (code / "Makefile").read_text().splitlines()
                     if l.startswith("CXXFLAGS")).split(":=")[1].strip()
        print(f"genn_kwargs={kwargs}: model {g.model_name}, reused={info.reused}, Makefile "
              f"flags now '{flags}', librunner.so built at {lib.stat().st_mtime_ns}")
        g.unload()
    stale = results[0] == results[1]
    print("PRESENT: the second model loads the first one's librunner.so (same name, not rebuilt)"
          if stale else "FIXED: a different preference gives a different build")
finally:
    shutil.rmtree(build, ignore_errors=True)
