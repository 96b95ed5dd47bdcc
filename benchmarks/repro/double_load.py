"""Repro: two loaded GeNNNetworks with the same model name and build directory in one process
share one GeNN runtime library (the same librunner.so is dlopen'ed once), so loading the
second silently breaks the first: its simulation runs on the second one's state and its
readouts are wrong (here 0 spikes instead of 19). Any two compiled networks of the same
network and options alive at once in one process hit this (e.g. ``with a, b:`` of two
``compiler.compile(net)`` results).

    .venv/bin/python benchmarks/repro/double_load.py

Proposed guard: a process-wide registry of loaded (build directory, model name) pairs in
``GeNNNetwork.build_and_load`` that raises a clear error (or unloads the other one) instead.
"""
import shutil
import tempfile

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
build = tempfile.mkdtemp(prefix="distsnn-double-")
try:
    for second in (False, True):
        g1 = GeNNNetwork(net, CompileOptions(mode="rate", example_timesteps=20))
        g1.build_and_load(build)
        g2 = None
        if second:
            g2 = GeNNNetwork(net, CompileOptions(mode="rate", example_timesteps=20))
            try:
                g2.build_and_load(build)
            except RuntimeError as err:
                print(f"GUARDED: loading a second copy raises: {err}")
                g2 = None
        g1.reset_example_state()
        g1.set_input(a, np.ones((1, 3), np.float32))
        g1.step(20)
        counts = g1.readout(b, 'spike_count').astype(int).tolist()
        print(f"second copy loaded: {second and g2 is not None!s:5} -> first copy's output "
              f"spike counts: {counts}")
        if second and g2 is not None:
            print("PRESENT: the first copy computes garbage" if counts != [[19, 19]] else
                  "FIXED: both copies work")
        g1.unload()
        if g2 is not None:
            g2.unload()
finally:
    shutil.rmtree(build, ignore_errors=True)
