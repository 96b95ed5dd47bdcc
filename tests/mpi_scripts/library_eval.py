"""Evaluate a small deterministic conv network with the library API and a communicator.

Usage: library_eval.py OUT_JSON BUILD_DIR INPUT [FAIL_RANK FAIL_BATCH]
INPUT is "if" (constant current) or "poisson". Rank 0 writes metrics, predictions, recorded
spike counts and the example count as JSON. With FAIL_RANK/FAIL_BATCH, that rank raises
inside a batch callback.
"""
import json
import sys

import numpy as np

from distsnn.callbacks import CustomHook, SpikeRecorder
from distsnn.communicators import MPI
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import AvgPoolDense2D, Conv2D
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, IntegrateFireInput, PoissonInput

out_path, build_dir, input_kind = sys.argv[1], sys.argv[2], sys.argv[3]
fail_rank, fail_batch = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (-1, -1)
comm = MPI()
rng = np.random.default_rng(42)
net = Network()
inp = net.add_population("in", (8, 8, 1),
                         PoissonInput() if input_kind == "poisson" else IntegrateFireInput())
hid = net.add_population("conv", (8, 8, 4), IntegrateFire(v_thresh=1.0))
out = net.add_population("out", (10,), IntegrateFire(v_thresh=1.0, readout="spike_count"),
                         record_spikes=True)
net.connect(inp, hid, Conv2D(rng.normal(0, 0.6, (3, 3, 1, 4)).astype(np.float32), padding="same"))
net.connect(hid, out, AvgPoolDense2D(rng.normal(0, 0.5, (64, 10)).astype(np.float32), (2, 2)))
net.outputs = [out]

n = 23  # odd, so the shards are uneven
x = rng.random((n, 8, 8, 1)).astype(np.float32)
y = rng.integers(0, 10, n)


def fail(batch, metrics):
    if comm.rank == fail_rank and batch == fail_batch:
        raise RuntimeError(f"injected failure on rank {comm.rank} at batch {batch}")


compiler = InferenceCompiler(40, rng_seed=7, communicator=comm, build_dir=build_dir,
                             checkpoints=[10, 20])
compiled = compiler.compile(net)
with compiled:
    metrics, _ = compiled.evaluate({inp: x}, {out: y},
                                   ["sparse_categorical_accuracy", "top_3_accuracy"],
                                   callbacks=[CustomHook(on_batch_end=fail)])
    report = compiled.last_report
    predictions, data = compiled.predict(
        {inp: x}, [out], callbacks=[SpikeRecorder(out, key="spikes", record_counts=True)])
    reused = compiled.build_info.reused
if comm.rank == 0:
    with open(out_path, "w") as f:
        json.dump({"ranks": comm.size, "accuracy": metrics[out]["sparse_categorical_accuracy"].result,
                   "report_metrics": {str(k): v for k, v in report.metrics.items()},
                   "examples": report.examples, "spikes": report.spikes,
                   "predictions": predictions[out].tolist(),
                   "recorded_counts": [c.tolist() for c in data["spikes"]],
                   "build_reused": reused}, f)
