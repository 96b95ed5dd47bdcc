"""Stop requests from signals: SIGTERM (Slurm pre-emption, time limit, ``scancel``), SIGUSR1
(``#SBATCH --signal``) and SIGINT (Ctrl-C).

While :func:`stop_on_signals` is active a signal only sets a flag; the evaluation loop asks
:meth:`StopRequest.requested` after each batch, saves its progress and stops. Outside the
evaluation loop (loading, building) a signal raises :class:`Interrupted` at once.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Interrupted(Exception):
    """The run was stopped by a signal; ``exit_code`` is 130 for SIGINT, else 128 + signal."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


class StopRequest:
    """The first stop signal received (None: none yet)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.deferred = False

    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.deferred:
            raise Interrupted(signum)

    @contextmanager
    def deferred_stop(self) -> Iterator[None]:
        """Within this block a signal only sets the flag (the loop stops at a batch end)."""
        self.deferred = True
        try:
            yield
        finally:
            self.deferred = False


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGTERM/SIGUSR1/SIGINT for the duration of the block (main thread only)."""
    stop = StopRequest()
    previous = {s: signal.signal(s, stop._handle) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
