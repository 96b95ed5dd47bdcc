"""Two ranks under a PeerWatch: a peer that is slow but alive is never reported lost (its
watchdog thread beats while its main thread waits in a collective or computes); a peer that
stops (SIGSTOP to itself) is, after the timeout.

Usage: peer_watch.py slow|stopped OUT_JSON
"""
import json
import os
import signal
import sys
import time

import numpy as np

from distsnn.parallel.communicator import MPICommunicator
from distsnn.parallel.liveness import PeerWatch

mode, out = sys.argv[1], sys.argv[2]
comm = MPICommunicator()
start = time.monotonic()
with PeerWatch(comm, timeout=5.0, grace=60.0) as watch:
    if mode == "slow":
        if comm.rank == 1:
            time.sleep(12)  # rank 0 waits 12 s in the allreduce below
        comm.allreduce_sum(np.ones(1))
    else:
        if comm.rank == 1:
            os.kill(os.getpid(), signal.SIGSTOP)  # the test resumes it after rank 0 is done
        else:
            watch.expired.wait(30)
    seen = {"rank": comm.rank, "expired": watch.expired.is_set(), "unheard": watch.unheard,
            "seconds": time.monotonic() - start}
if comm.rank == 0:
    with open(out, "w") as f:
        json.dump(seen, f)
    sys.stdout.flush()
    os._exit(0)  # rank 1 may still be stopped: do not wait for it in MPI_Finalize
