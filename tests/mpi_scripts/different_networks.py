"""Ranks that build different networks must all fail with one clear error.

Usage: different_networks.py BUILD_DIR. Each rank draws its weights from its own stream,
as an unseeded ``np.random.choice`` of normalisation data would make them differ.
"""
import sys

import numpy as np

from distsnn.communicators import MPI
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire

comm = MPI()
rng = np.random.default_rng(100 + comm.rank)
net = Network()
inp = net.add_population("in", 4, BinarySpikeInput())
out = net.add_population("out", 3, IntegrateFire(readout="spike_count"))
net.connect(inp, out, Dense(rng.normal(size=(4, 3)).astype(np.float32)))
net.outputs = [out]
compiled = InferenceCompiler(10, rng_seed=1, communicator=comm, build_dir=sys.argv[1]).compile(net)
with compiled:
    compiled.predict({inp: np.ones((2, 4), np.float32)}, callbacks=[])
print("unreachable: the ranks' networks differ")
