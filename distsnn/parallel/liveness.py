"""A watchdog for hung peers: a rank stopped (SIGSTOP), hung, or on a node whose network or
power is gone. Without it the other ranks would finish their shards and wait in the final
reduction until the job's time limit, holding every node of the allocation.

While a :class:`PeerWatch` is active a background thread sends each other rank a heartbeat
every few seconds and notes whose arrive (MPI messages on a channel of their own, so nothing
runs in the step loop and a main thread waiting inside a collective still beats). A rank not
heard from for ``timeout`` seconds makes every rank that notices stop at its next batch end,
save its progress in the journal and end the job with one line naming the ranks not heard
from; a main thread that cannot stop (waiting for the lost rank inside a collective) is ended
by the watchdog itself ``grace`` seconds later. Long waits outside it (rank 0 converting,
a node building under the lock) are outside the watch.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

from distsnn.errors import UserError
from distsnn.parallel.communicator import Communicator

#: Seconds a rank may go unheard before the job ends (``--peer-timeout``).
DEFAULT_PEER_TIMEOUT = 300.0
#: Exit code of a job ended by the watchdog (EX_TEMPFAIL: a rerun resumes it).
PEER_LOST_EXIT = 75


class PeerLost(Exception):
    """Some ranks were not heard from for the peer timeout: the job ends (resumable)."""

    exit_code = PEER_LOST_EXIT

    def __init__(self, message: str, reporter: int):
        super().__init__(message)
        self.reporter = reporter  # the rank that prints the message: the lowest one heard


def peer_timeout(option: Optional[float]) -> float:
    """The peer timeout in seconds: the option, else ``$DISTSNN_PEER_TIMEOUT``, else the
    default; 0 turns the watchdog off."""
    text = option if option is not None else os.environ.get("DISTSNN_PEER_TIMEOUT")
    if text is None:
        return DEFAULT_PEER_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"the peer timeout must be a number of seconds (0: off), not "
                        f"{text!r} (--peer-timeout or DISTSNN_PEER_TIMEOUT)") from None
    if value < 0 or (0 < value < 5):
        raise UserError(f"the peer timeout must be 0 (off) or at least 5 seconds, not {value:g}")
    return value


class PeerWatch:
    """Heartbeats with every other rank while the block runs (see the module docstring)."""

    def __init__(self, comm: Communicator, timeout: float, journal: Optional[str] = None,
                 grace: float = 10.0):
        self.comm = comm
        self.timeout = timeout
        self.journal = journal  # where the finished chunks are (named in the message)
        self.grace = grace
        self.period = min(max(timeout / 6, 0.5), 10.0)
        self.unheard: list[int] = []
        self.expired = threading.Event()
        self._done = threading.Event()
        self._handled = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def active(self) -> bool:
        return self.comm.size > 1 and self.timeout > 0

    def __enter__(self) -> "PeerWatch":
        if self.active:
            self._thread = threading.Thread(target=self._watch, name="distsnn-peer-watch",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._handled.set()
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def lost(self) -> PeerLost:
        """The error that ends the job, once :attr:`expired` is set (main thread)."""
        self._handled.set()
        return PeerLost(self._describe(), self._reporter())

    def _watch(self) -> None:
        comm, peers = self.comm, [r for r in range(self.comm.size) if r != self.comm.rank]
        last = dict.fromkeys(peers, time.monotonic())
        expired_at = 0.0
        while not self._done.wait(self.period):
            comm.send_heartbeats(peers)
            now = time.monotonic()
            for rank in comm.heard_from():
                last[rank] = now
            if not self.expired.is_set():
                self.unheard = sorted(r for r, t in last.items() if now - t > self.timeout)
                if self.unheard:
                    expired_at = now
                    self.expired.set()
            elif not self._handled.is_set() and now - expired_at > self.grace:
                # the main thread is stuck (inside a collective with a lost rank): end here
                if comm.rank == self._reporter():
                    sys.stderr.write(f"distsnn: error: {self._describe()}\n")
                    sys.stderr.flush()
                comm.abort(PEER_LOST_EXIT)

    def _reporter(self) -> int:
        return min(r for r in range(self.comm.size) if r not in self.unheard)

    def _describe(self) -> str:
        ranks = ", ".join(map(str, self.unheard))
        saved = (f"progress saved in {self.journal}; rerun the same command to resume"
                 if self.journal else "no journal: a rerun starts over")
        return (f"rank{'s' if len(self.unheard) > 1 else ''} {ranks} not heard from for "
                f"{self.timeout:g} s (stopped, hung, or its node or network lost): the job "
                f"ends; {saved}")
