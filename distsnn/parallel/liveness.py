"""A watchdog for hung peers: a rank stopped (SIGSTOP), hung, or on a node whose network or
power is gone. Without it the other ranks would finish their shards and wait in the final
reduction until the job's time limit, holding every node of the allocation.

While a :class:`PeerWatch` is active a background thread sends each other rank a heartbeat
every few seconds and notes whose arrive (MPI messages on a channel of their own, so nothing
runs in the step loop and a main thread waiting inside a collective still beats); a second
thread, which makes no MPI call, decides, so a heartbeat send stuck in a broken transport
cannot stop the watchdog. A rank not
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
#: Seconds the watchdog gives MPI_Abort before it ends its own process without it.
ABORT_WAIT_S = 10.0


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


def end_process(comm: Communicator, message: Optional[str], code: int = PEER_LOST_EXIT) -> None:
    """End this rank of a job that lost peers: print ``message`` (one rank does), try
    MPI_Abort for the ranks still running, and exit without waiting on MPI, whose calls can
    block for good on a transport with a lost peer (no barrier, no MPI_Finalize)."""
    if message:
        sys.stderr.write(f"distsnn: error: {message}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    aborter = threading.Thread(target=comm.abort, args=(code,), daemon=True)
    aborter.start()
    aborter.join(timeout=ABORT_WAIT_S)
    os._exit(code)


class PeerWatch:
    """Heartbeats with every other rank while the block runs (see the module docstring).

    Two threads: one exchanges heartbeats over MPI, the other (no MPI) decides. A transport
    whose peer is gone can block the heartbeat thread inside MPI itself (seen with MPICH's
    ofi/tcp netmod: ``MPI_Isend`` to a killed node never returns); the deciding thread still
    sees the silence, names the rank the stuck send was for, and ends this process."""

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
        self._threads: list[threading.Thread] = []
        self._peers = [r for r in range(comm.size) if r != comm.rank]
        self._last_heard = dict.fromkeys(self._peers, time.monotonic())
        self._sending_to: Optional[int] = None  # the peer of a heartbeat send in progress

    @property
    def active(self) -> bool:
        return self.comm.size > 1 and self.timeout > 0

    def __enter__(self) -> "PeerWatch":
        if self.active:
            now = time.monotonic()
            self._last_heard = dict.fromkeys(self._peers, now)
            self._threads = [threading.Thread(target=target, name=name, daemon=True)
                             for target, name in ((self._beat, "distsnn-heartbeats"),
                                                  (self._decide, "distsnn-peer-watch"))]
            for thread in self._threads:
                thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._handled.set()
        self._done.set()
        if self._threads:
            beat, decide = self._threads
            decide.join()
            beat.join(timeout=self.period * 2)  # may be stuck inside MPI with a lost peer

    def lost(self) -> PeerLost:
        """The error that ends the job, once :attr:`expired` is set (main thread)."""
        self._handled.set()
        return PeerLost(self._describe(), self._reporter())

    def _beat(self) -> None:
        """Send a heartbeat to every peer and note whose arrived, every period (MPI)."""
        while not self._done.wait(self.period):
            for peer in self._peers:
                self._sending_to = peer
                self.comm.send_heartbeats([peer])
            self._sending_to = None
            now = time.monotonic()
            for rank in self.comm.heard_from():
                self._last_heard[rank] = now

    def _decide(self) -> None:
        """Notice silence; end the process when the main thread cannot (no MPI here but the
        final abort)."""
        expired_at = 0.0
        while not self._done.wait(self.period / 2):
            now = time.monotonic()
            if not self.expired.is_set():
                silent = sorted(r for r, t in self._last_heard.items() if now - t > self.timeout)
                if silent:
                    stuck = self._sending_to
                    self.unheard = [stuck] if stuck in silent else silent
                    expired_at = now
                    self.expired.set()
            elif not self._handled.is_set() and now - expired_at > self.grace:
                # the main thread is stuck (inside a collective with a lost rank): end here
                self._end_process()

    def _end_process(self) -> None:
        lost = self.lost()
        end_process(self.comm, str(lost) if self.comm.rank == lost.reporter else None)

    def _reporter(self) -> int:
        return min(r for r in range(self.comm.size) if r not in self.unheard)

    def _describe(self) -> str:
        ranks = ", ".join(map(str, self.unheard))
        saved = (f"progress saved in {self.journal}; rerun the same command to resume"
                 if self.journal else "no journal: a rerun starts over")
        return (f"rank{'s' if len(self.unheard) > 1 else ''} {ranks} not heard from for "
                f"{self.timeout:g} s (stopped, hung, or its node or network lost): the job "
                f"ends; {saved}")
