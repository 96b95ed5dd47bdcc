"""evaluate_batch_iter with per-rank pipelines: each rank must read only its own batches.

Usage: batch_iter_shards.py OUT_JSON BUILD_DIR. Every rank writes OUT_JSON.rank<r> with the
batch numbers its pipelines produced and the metrics of evaluate, of a callable pipeline and
of an object with ``shard`` (a tf.data-like dataset).
"""
import json
import sys

import numpy as np

from distsnn.communicators import MPI
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, PoissonInput

out_path, build_dir = sys.argv[1], sys.argv[2]
comm = MPI()
rng = np.random.default_rng(4)
net = Network()
inp = net.add_population("in", 12, PoissonInput())
out = net.add_population("out", 5, IntegrateFire(v_thresh=1.0, readout="spike_count"))
net.connect(inp, out, Dense(rng.normal(0.1, 0.5, (12, 5)).astype(np.float32)))
net.outputs = [out]
x = rng.random((23, 12)).astype(np.float32)
y = rng.random((23, 5)) * 20  # targets: the squared error depends on every spike count
B = 4  # pipeline batch size: 6 batches, the last one of 3 examples
produced = {"callable": [], "shard": []}


def batches(kind, rank, size):
    for j in range(rank, -(-len(x) // B), size):
        produced[kind].append(j)
        yield x[j * B:(j + 1) * B], y[j * B:(j + 1) * B]


class Sharded:
    def shard(self, num_shards, index):
        return batches("shard", index, num_shards)

    def __iter__(self):
        raise AssertionError("a shardable dataset must not be iterated whole")


compiled = InferenceCompiler(30, rng_seed=3, communicator=comm, build_dir=build_dir).compile(net)
with compiled:
    reference, _ = compiled.evaluate({inp: x}, {out: y}, "mean_square_error", callbacks=[])
    by_callable, _ = compiled.evaluate_batch_iter(inp, out, lambda r, n: batches("callable", r, n),
                                                  metrics="mean_square_error", callbacks=[])
    by_shard, _ = compiled.evaluate_batch_iter(inp, out, Sharded(), metrics="mean_square_error",
                                               callbacks=[])
with open(f"{out_path}.rank{comm.rank}", "w") as f:
    json.dump({"produced": produced,
               "counts": [[m[out].sum_sq, m[out].elements]
                          for m in (reference, by_callable, by_shard)]}, f)
