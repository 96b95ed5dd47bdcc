"""Spike-norm on the small network of tests/helpers/spike_norm_network.py with a communicator.

Usage: spike_norm_small.py OUT_JSON BUILD_DIR PERCENTILE [binary|poisson-sharded]

``poisson-sharded`` swaps the input for Poisson neurons and gives each rank only its own
contiguous shard (``sharded=True``), as ``distsnn convert --method spike-norm`` does.
"""
import json
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from distsnn.communicators import MPI  # noqa: E402
from distsnn.neurons import PoissonInput  # noqa: E402
from distsnn.parallel.sharding import shard_bounds  # noqa: E402
from distsnn.spike_norm import spike_normalise  # noqa: E402
from helpers.spike_norm_network import T, small_network  # noqa: E402

out_path, build_dir, percentile = sys.argv[1], sys.argv[2], float(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "binary"
comm = MPI()
net, x = small_network()
sharded = mode == "poisson-sharded"
if sharded:
    net.population("in").neuron = PoissonInput()
    start, stop = shard_bounds(len(x), comm.rank, comm.size)
    x = 0.7 * x[start:stop]
thresholds = spike_normalise(net, norm_data=x, evaluate_timesteps=T, rng_seed=3,
                             communicator=comm, build_dir=build_dir, percentile=percentile,
                             sharded=sharded)
if comm.rank == 0:
    json.dump({"ranks": comm.size, "thresholds": thresholds,
               "metadata": net.metadata["spike_norm"]}, open(out_path, "w"))
