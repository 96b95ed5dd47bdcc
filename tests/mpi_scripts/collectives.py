"""The communicator's collectives that replace per-rank lists (no all-gathers).

Usage: collectives.py. Rank r holds r + 1 rows (rank 1 none); each rank records what it
got: the gathered rows (rank 0), its exclusive prefix sum, the all-reduced minimum, and the
error ``agree`` raised when rank 1 alone fails; rank 0 prints them all as one JSON list.
"""
import json

import numpy as np

from distsnn.errors import SharedUserError, UserError
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
record = {"rank": comm.rank, "gathered": None if gathered is None else gathered.tolist(),
          "exclusive_sum": comm.exclusive_sum(rows),
          "min": comm.allreduce_min(np.array([comm.rank + 5, -comm.rank])).tolist(),
          "agree": agreed, "mismatch": mismatch, "ok": agree(comm, lambda: comm.rank)}
records = comm.gather_object(record)
if comm.rank == 0:
    print(json.dumps(records), flush=True)
