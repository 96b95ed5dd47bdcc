"""The communicator's collectives that replace per-rank lists (no all-gathers).

Usage: collectives.py. Rank r holds r + 1 rows (rank 1 none); each rank records what it
got: the gathered rows (rank 0), its exclusive prefix sum, the all-reduced minimum, and the
error ``agree`` raised when rank 1 alone fails, metrics reduced together (rank 1 without
examples); rank 0 prints them all as one JSON list.
"""
import json

import numpy as np

from distsnn.compilers.report import reduce_together
from distsnn.errors import SharedUserError, UserError
from distsnn.metrics import ConfusionMatrix, MeanSquareError, SparseCategoricalAccuracy
from distsnn.parallel.agreement import agree
from distsnn.parallel.communicator import MPICommunicator

comm = MPICommunicator()
rows = 0 if comm.rank == 1 else comm.rank + 1
mine = np.full((rows, 2), comm.rank, np.float32)
gathered = comm.gather_arrays(mine)


def fails_on_rank_one():
    if comm.rank == 1:
        raise UserError("only rank 1 sees this")
    return comm.rank


try:
    agree(comm, fails_on_rank_one)
    agreed = None
except SharedUserError as err:
    agreed = str(err)
try:
    comm.gather_arrays(np.zeros((1, 2 + comm.rank), np.float32))
    mismatch = None
except ValueError as err:
    mismatch = "disagree" in str(err)
# metrics summed in one all-reduce per number type; rank 1 saw no examples (its confusion
# matrix is empty), the others one each
metrics = [ConfusionMatrix(), SparseCategoricalAccuracy(), MeanSquareError()]
if comm.rank != 1:
    scores, label = np.eye(3)[[comm.rank]], np.array([0])
    for m in metrics[:2]:
        m.update(label, scores)
    metrics[2].update(np.zeros((1, 3)), scores)
extra = reduce_together(metrics, np.array([comm.rank, 1], np.int64), comm)

record = {"rank": comm.rank, "confusion": metrics[0].matrix.tolist(),
          "accuracy": metrics[1].counts().tolist(), "mse": metrics[2].counts().tolist(),
          "extra": extra.tolist(), "gathered": None if gathered is None else gathered.tolist(),
          "exclusive_sum": comm.exclusive_sum(rows),
          "min": comm.allreduce_min(np.array([comm.rank + 5, -comm.rank])).tolist(),
          "agree": agreed, "mismatch": mismatch, "ok": agree(comm, lambda: comm.rank)}
records = comm.gather_object(record)
if comm.rank == 0:
    print(json.dumps(records), flush=True)
