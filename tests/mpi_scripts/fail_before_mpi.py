"""Rank 1 fails before any communicator exists; rank 0 makes one (and so waits in MPI_Init
for rank 1). Usage: fail_before_mpi.py. Without distsnn's early abort hook this never ends."""
import os

from distsnn.communicators import MPI

if os.environ.get("PMI_RANK") == "1":
    raise RuntimeError("injected failure on rank 1 before MPI")
comm = MPI()
comm.barrier()
print("rank 0 passed the barrier", flush=True)
