"""Rank 0 computes for 1.5 s, then every rank meets at ``sleeping_barrier``.

Usage: sleeping_barrier.py. Every rank prints ``{"rank", "wall", "cpu"}``: the seconds it
spent in the barrier, wall-clock and CPU.
"""
import json
import time

from distsnn.parallel.communicator import MPICommunicator

comm = MPICommunicator()
comm.barrier()
if comm.rank == 0:
    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # busy, as a conversion is
        pass
wall, cpu = time.monotonic(), time.process_time()
comm.sleeping_barrier()
print(json.dumps({"rank": comm.rank, "wall": time.monotonic() - wall,
                  "cpu": time.process_time() - cpu}), flush=True)
