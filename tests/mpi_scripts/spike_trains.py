"""Evaluate and predict on a list of PreprocessedSpikes with a communicator.

Usage: spike_trains.py OUT_JSON BUILD_DIR. Rank 0 writes the metric counts, predictions,
spike statistics and rank count as JSON.
"""
import json
import sys

import numpy as np

from distsnn.communicators import MPI
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import LeakyIntegrateFire, SpikeInput
from distsnn.utils.data import preprocess_spikes

out_path, build_dir = sys.argv[1], sys.argv[2]
comm = MPI()
rng = np.random.default_rng(7)
net = Network()
inp = net.add_population("in", 6, SpikeInput(max_spikes=200))
out = net.add_population("out", 3, LeakyIntegrateFire(v_thresh=0.5, tau_mem=10.0,
                                                       tau_refrac=2.0, readout="spike_count"))
net.connect(inp, out, Dense((rng.integers(-2, 8, (6, 3)) / 8).astype(np.float32)))
net.outputs = [out]
n = 11  # odd: uneven shards
x = [preprocess_spikes(rng.uniform(0, 20, k), rng.integers(0, 6, k), 6)
     for k in rng.integers(0, 30, n)]
y = rng.integers(0, 3, n)
compiled = InferenceCompiler(20, rng_seed=1, communicator=comm, build_dir=build_dir).compile(net)
with compiled:
    metrics, _ = compiled.evaluate({inp: x}, {out: y}, callbacks=[])
    predictions, _ = compiled.predict({inp: x}, [out], callbacks=[])
    spikes = compiled.last_report.spikes["populations"]
if comm.rank == 0:
    with open(out_path, "w") as f:
        json.dump({"ranks": comm.size, "correct": int(metrics[out].correct),
                   "total": int(metrics[out].total), "predictions": predictions[out].tolist(),
                   "spikes": {k: v["spikes"] for k, v in spikes.items()}}, f)
