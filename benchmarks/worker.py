"""One distributed evaluation through distsnn's CLI pipeline, run under ``mpiexec -n N``.

Usage: worker.py WORKLOAD EXAMPLES BUILD_DIR OUT_JSON

Exactly what ``distsnn evaluate`` does (there is no such command yet, so this calls the same
library functions): rank 0 loads the network file, or converts the Keras model, and broadcasts
it (``distsnn.jobs.network_source.load_or_convert``); every rank reads only its shard of the .npz test
set, builds (once per node) and loads the GeNN model and evaluates its shard with
``communicator=MPI()`` (``distsnn.jobs.evaluate.evaluate_file``). Rank 0 writes the results dict
plus every rank's timings to OUT_JSON. The data files must exist (the driver creates them).
"""
import json
import os
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import WORKLOADS, digits_conversion_options  # noqa: E402

from distsnn.communicators import MPI  # noqa: E402
from distsnn.jobs.evaluate import EvaluateOptions, evaluate_file  # noqa: E402
from distsnn.jobs.network_source import ConversionOptions, load_or_convert  # noqa: E402
from distsnn.parallel.sharding import shard_bounds  # noqa: E402
from distsnn.utils.timings import Timings  # noqa: E402

name, examples, build_dir, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
workload = WORKLOADS[name]
comm = MPI()
import_s = time.perf_counter() - T0
model_path, data_path = workload.model_path, workload.data_path(examples)
options = (digits_conversion_options(workload) if workload.source == "keras"
           else ConversionOptions())
options.build_dir = build_dir
timings = Timings()
comm.barrier()
start = time.perf_counter()
network = load_or_convert(str(model_path), options, comm, timings)
network_ready_s = time.perf_counter() - start   # includes rank 0's Keras import, if any
results = evaluate_file(network, EvaluateOptions(data=str(data_path),
                                                  timesteps=[workload.timesteps], backend="cpu",
                                                  seed=1, build_dir=build_dir, progress=False),
                        comm, timings)
pipeline_s = time.perf_counter() - start
n_total = results["dataset"]["examples"]
lo, hi = shard_bounds(n_total, comm.rank, comm.size)
per_rank = comm.gather_object({"rank": comm.rank, "examples": hi - lo, "pid": os.getpid(),
                               "import_s": import_s, "pipeline_s": pipeline_s,
                               "network_ready_s": network_ready_s,
                               "timings_s": dict(timings.values)})
if comm.rank == 0:
    results["per_rank"] = per_rank
    results["workload"] = name
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, out_path)
