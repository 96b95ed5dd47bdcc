"""Spike-norm on the small network of tests/test_spike_norm.py with a communicator.

Usage: spike_norm_small.py OUT_JSON BUILD_DIR PERCENTILE
"""
import json
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from test_spike_norm import T, small_network  # noqa: E402

from distsnn.communicators import MPI  # noqa: E402
from distsnn.spike_norm import spike_normalise  # noqa: E402

out_path, build_dir, percentile = sys.argv[1], sys.argv[2], float(sys.argv[3])
comm = MPI()
net, x = small_network()
thresholds = spike_normalise(net, norm_data=x, evaluate_timesteps=T, rng_seed=3,
                             communicator=comm, build_dir=build_dir, percentile=percentile)
if comm.rank == 0:
    json.dump({"ranks": comm.size, "thresholds": thresholds,
               "metadata": net.metadata["spike_norm"]}, open(out_path, "w"))
