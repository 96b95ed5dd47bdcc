"""Inter-process communication: a serial communicator and an mpi4py one.

This is the only module that imports mpi4py. Arrays travel through mpi4py's buffer-based
methods (``Bcast``, ``Allreduce``, ``Gatherv``); only small control values are pickled.
The interface is a superset of mlGeNN's ``Communicator`` (``rank``, ``num_ranks``,
``barrier``, ``broadcast``, ``reduce_sum``).
"""
from __future__ import annotations

import sys
import traceback
from abc import ABC, abstractmethod
from typing import Any, Optional

import numpy as np


class Communicator(ABC):
    """What distsnn needs from a group of cooperating processes."""

    @property
    @abstractmethod
    def rank(self) -> int: ...

    @property
    @abstractmethod
    def size(self) -> int: ...

    @property
    def num_ranks(self) -> int:
        """mlGeNN's name for :attr:`size`."""
        return self.size

    @property
    @abstractmethod
    def local_rank(self) -> int:
        """Rank among the processes on this node."""

    @property
    @abstractmethod
    def local_size(self) -> int:
        """Number of processes on this node."""

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def library_version(self) -> Optional[str]:
        """The MPI library's version line; None without MPI."""
        return None

    @abstractmethod
    def barrier(self) -> None: ...

    @abstractmethod
    def local_barrier(self) -> None:
        """Barrier among the processes of this node only."""

    @abstractmethod
    def broadcast_bytes(self, data: Optional[bytes], root: int = 0) -> bytes:
        """Every rank returns root's ``data``."""

    @abstractmethod
    def broadcast_object(self, value: Any, root: int = 0) -> Any:
        """Broadcast a small picklable control value (a flag, a message, a dict of options)."""

    @abstractmethod
    def gather_object(self, value: Any, root: int = 0) -> Optional[list]:
        """List of every rank's small picklable value on root (None elsewhere)."""

    @abstractmethod
    def broadcast_array(self, array: Optional[np.ndarray], root: int = 0) -> np.ndarray:
        """Every rank returns a copy of root's array (shape and dtype included)."""

    @abstractmethod
    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks; every rank gets the result."""

    @abstractmethod
    def allreduce_max(self, array: np.ndarray) -> np.ndarray:
        """Element-wise maximum over ranks; every rank gets the result."""

    def allreduce_min(self, array: np.ndarray) -> np.ndarray:
        """Element-wise minimum over ranks; every rank gets the result."""
        return -self.allreduce_max(-np.asarray(array))

    def exclusive_sum(self, value: int) -> int:
        """The sum of ``value`` over the ranks before this one (0 on rank 0)."""
        counts = np.zeros(self.size, np.int64)
        counts[self.rank] = value
        return int(self.allreduce_sum(counts)[:self.rank].sum())

    @abstractmethod
    def gather_arrays(self, array: np.ndarray, root: int = 0) -> Optional[np.ndarray]:
        """Concatenate each rank's array along axis 0 in rank order, on root (None elsewhere).

        Arrays must agree in dtype and trailing shape; their first axes may differ.
        """

    @abstractmethod
    def abort(self, code: int = 1) -> None:
        """End every process of the job now."""

    def all_arrive(self, timeout: float) -> bool:
        """Whether every rank calls this within ``timeout`` seconds (a barrier that gives up,
        on its own channel, so ranks still inside other collectives cannot be confused)."""
        return True

    def sleeping_barrier(self) -> None:
        """A barrier at which early ranks sleep instead of polling a core: for waits of
        seconds, such as the other ranks' while rank 0 converts a model."""
        self.barrier()

    def send_heartbeats(self, peers: list[int]) -> None:
        """Tell ``peers`` that this rank is alive (non-blocking, on a channel of its own;
        safe from a second thread while the main thread is inside a collective)."""

    def heard_from(self) -> set[int]:
        """The ranks whose heartbeats arrived since the last call (non-blocking)."""
        return set()

    # mlGeNN compatibility ---------------------------------------------------------------
    def broadcast(self, data: np.ndarray, root: int = 0) -> None:
        """In-place broadcast of a numpy buffer (mlGeNN's ``Communicator.broadcast``)."""
        data[...] = self.broadcast_array(data if self.rank == root else None, root)

    def reduce_sum(self, value):
        """Sum of a scalar or array over ranks, on every rank (mlGeNN's ``reduce_sum``)."""
        result = self.allreduce_sum(np.asarray(value))
        return result.item() if np.ndim(value) == 0 else result


class SerialCommunicator(Communicator):
    """One process: every collective is the identity."""

    rank = 0  # type: ignore[assignment]
    size = 1  # type: ignore[assignment]
    local_rank = 0  # type: ignore[assignment]
    local_size = 1  # type: ignore[assignment]

    def barrier(self) -> None:
        pass

    def local_barrier(self) -> None:
        pass

    def broadcast_bytes(self, data, root=0):
        return data

    def broadcast_object(self, value, root=0):
        return value

    def gather_object(self, value, root=0):
        return [value]

    def broadcast_array(self, array, root=0):
        return np.array(array)

    def allreduce_sum(self, array):
        return np.array(array)

    def allreduce_max(self, array):
        return np.array(array)

    def gather_arrays(self, array, root=0):
        return np.array(array)

    def abort(self, code=1):
        sys.exit(code)


class MPICommunicator(Communicator):
    """Communicator over ``MPI.COMM_WORLD`` (mpi4py).

    With more than one rank, an uncaught exception on any rank prints that rank's
    traceback and aborts the whole job, so no rank is left waiting in a collective; an
    uncaught ``SharedUserError`` (raised on every rank alike) prints one line from rank 0
    and every rank exits with code 1.
    """

    def __init__(self, abort_on_exception: bool = True):
        try:
            from mpi4py import MPI as _MPI
        except ImportError as err:  # pragma: no cover - mpi4py is a dependency
            raise ImportError("distsnn's MPI communicator needs mpi4py: pip install mpi4py "
                              "(and an MPI library, e.g. pip install mpich)") from err
        self._mpi = _MPI
        self._comm = _MPI.COMM_WORLD
        self._local = self._comm.Split_type(_MPI.COMM_TYPE_SHARED)
        self._side = self._comm.Dup()
        self._sleepy = self._comm.Dup()
        self._beats = self._comm.Dup()
        self._beat_requests: list = []
        global _WORLD
        _WORLD = self
        if abort_on_exception and self._comm.Get_size() > 1:
            _install_abort_hook(self)

    @property
    def rank(self) -> int:
        return self._comm.Get_rank()

    @property
    def size(self) -> int:
        return self._comm.Get_size()

    @property
    def local_rank(self) -> int:
        return self._local.Get_rank()

    @property
    def local_size(self) -> int:
        return self._local.Get_size()

    @property
    def library_version(self) -> str:
        return self._mpi.Get_library_version().strip().splitlines()[0]

    def barrier(self) -> None:
        self._comm.Barrier()

    def local_barrier(self) -> None:
        self._local.Barrier()

    def broadcast_object(self, value, root=0):
        return self._comm.bcast(value, root=root)

    def gather_object(self, value, root=0):
        return self._comm.gather(value, root=root)

    def broadcast_bytes(self, data, root=0):
        length = np.array([len(data) if self.rank == root else 0], np.int64)
        self._comm.Bcast(length, root=root)
        buffer = bytearray(data) if self.rank == root else bytearray(int(length[0]))
        self._comm.Bcast(buffer, root=root)
        return bytes(buffer)

    def broadcast_array(self, array, root=0):
        header = None
        if self.rank == root:
            array = np.ascontiguousarray(array)
            header = (array.dtype.str, array.shape)
        dtype, shape = self._comm.bcast(header, root=root)
        out = array.copy() if self.rank == root else np.empty(shape, np.dtype(dtype))
        self._comm.Bcast(out, root=root)
        return out

    def _allreduce(self, array, op):
        send = np.ascontiguousarray(array)
        recv = np.empty_like(send)
        self._comm.Allreduce(send, recv, op=op)
        return recv

    def allreduce_sum(self, array):
        return self._allreduce(array, self._mpi.SUM)

    def allreduce_max(self, array):
        return self._allreduce(array, self._mpi.MAX)

    def allreduce_min(self, array):
        return self._allreduce(array, self._mpi.MIN)

    def exclusive_sum(self, value):
        total = self._comm.exscan(int(value), op=self._mpi.SUM)
        return 0 if self.rank == 0 else int(total)

    def gather_arrays(self, array, root=0):
        # the row counts go to root alone (a gather, not an all-gather: nothing of size N
        # reaches every rank); root checks dtype and trailing shape and tells every rank
        array = np.ascontiguousarray(array)
        row = int(np.prod(array.shape[1:], dtype=np.int64))
        meta = self._comm.gather((array.shape[0], array.dtype.str, array.shape[1:]), root=root)
        error = None
        if self.rank == root and len({m[1:] for m in meta}) != 1:
            error = f"gather_arrays: ranks disagree on dtype/trailing shape: {meta}"
        error = self._comm.bcast(error, root=root)
        if error is not None:
            raise ValueError(error)
        if self.rank != root:
            self._comm.Gatherv(array, None, root=root)
            return None
        counts = np.array([m[0] for m in meta], np.int64) * row
        out = np.empty((int(counts.sum()) // max(row, 1),) + array.shape[1:], array.dtype)
        self._comm.Gatherv(array, (out, counts), root=root)
        return out

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        self._comm.Abort(code)

    def sleeping_barrier(self):
        import time
        request = self._sleepy.Ibarrier()
        while not request.Test():
            time.sleep(0.005)

    def send_heartbeats(self, peers):
        self._beat_requests = [r for r in self._beat_requests if not r.Test()]
        self._beat_requests += [self._beats.Isend(_BEAT, dest=p, tag=_BEAT_TAG) for p in peers]

    def heard_from(self):
        heard, status = set(), self._mpi.Status()
        while self._beats.Iprobe(source=self._mpi.ANY_SOURCE, tag=_BEAT_TAG, status=status):
            self._beats.Recv(_BEAT_IN, source=status.Get_source(), tag=_BEAT_TAG)
            heard.add(status.Get_source())
        return heard

    def all_arrive(self, timeout):
        import time
        request = self._side.Ibarrier()
        deadline = time.monotonic() + timeout
        while not request.Test():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


_BEAT_TAG = 7
_BEAT = np.zeros(1, np.uint8)      # a heartbeat carries nothing but its sender
_BEAT_IN = np.zeros(1, np.uint8)

#: The job's MPI communicator once one exists (for ending the job from the command line).
_WORLD: Optional[MPICommunicator] = None


def end_job(shared: bool) -> bool:
    """Whether every rank of the job is failing too (then all can exit normally).

    ``shared``: every rank raised the same error, so wait up to 10 s for all; otherwise wait
    3 s in case the others fail as well. Before MPI is initialised (a bad option) only
    ``shared`` errors occur; ranks other than 0 pause so that the launcher does not end the
    job before rank 0 has printed."""
    world = _WORLD
    if world is None:
        import os
        import time
        if shared and _launcher_rank() != 0 and (
                _launcher_size() > 1 or os.environ.get("SLURM_NTASKS", "1") not in ("", "1")):
            time.sleep(1.0)
        return True
    return world.size == 1 or world.all_arrive(10.0 if shared else 3.0)


def _launcher_rank() -> int:
    """This process's MPI rank from the launcher's variables (before MPI is initialised)."""
    import os
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _launcher_size() -> int:
    """The number of ranks an MPI launcher started (1 when none did)."""
    import os
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def install_early_abort_hook(wait_s: float = 30.0) -> None:
    """Before MPI is initialised: an uncaught exception on one rank of a multi-rank job
    prints its traceback, initialises MPI and aborts the job, so that ranks already waiting
    in ``MPI_Init`` (for a communicator made later in the script) do not wait forever. If
    MPI cannot be initialised within ``wait_s`` (the other ranks ended without it), the rank
    just exits with code 1. ``distsnn.communicators`` installs it on import."""
    if _WORLD is not None or _launcher_size() <= 1:
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if _WORLD is not None or issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"distsnn: rank {_launcher_rank()} of {_launcher_size()} failed before "
                         f"MPI was initialised; aborting all ranks.\n{text}")
        sys.stderr.flush()

        def abort() -> None:
            from mpi4py import MPI as _MPI
            _MPI.COMM_WORLD.Abort(1)

        import os
        import threading
        import time
        threading.Thread(target=abort, daemon=True).start()
        time.sleep(wait_s)
        os._exit(1)

    sys.excepthook = hook


def _install_abort_hook(comm: MPICommunicator) -> None:
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        from distsnn.errors import SharedUserError
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
        elif issubclass(exc_type, SharedUserError) and end_job(shared=True):
            # every rank has the same error: one line from rank 0, exit code 1 everywhere
            if comm.rank == 0:
                sys.stderr.write(f"distsnn: error: {exc}\n")
                sys.stderr.flush()
            return
        else:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            sys.stderr.write(f"distsnn: rank {comm.rank} of {comm.size} failed; aborting all "
                             f"ranks.\n{text}")
        comm.abort(1)

    sys.excepthook = hook


def initialise_mpi() -> None:
    """Initialise MPI (importing mpi4py's ``MPI`` does), e.g. to time it apart from making
    the communicators."""
    from mpi4py import MPI as _MPI  # noqa: F401


def MPI(**kwargs) -> MPICommunicator:  # noqa: N802 - mlGeNN's spelling
    """The MPI communicator, as ``distsnn.communicators.MPI()``."""
    return MPICommunicator(**kwargs)
