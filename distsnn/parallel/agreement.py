"""How ranks agree on user errors, so that no rank is left waiting in a collective."""
from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

from distsnn.errors import USER_ERRORS, SharedUserError
from distsnn.parallel.communicator import Communicator

T = TypeVar("T")


def on_root(comm: Communicator, fn: Callable[[], T], broadcast: bool = True) -> T:
    """Run ``fn`` on rank 0 only; every rank raises its user error, if any, or gets its
    (small, picklable) result; ``broadcast=False``: only rank 0 gets it (e.g. bytes that
    travel through ``broadcast_bytes``)."""
    result, error = None, None
    if comm.rank == 0:
        try:
            result = fn()
        except USER_ERRORS as err:
            error = str(err)
    error = comm.broadcast_object(error)
    if error is not None:
        raise SharedUserError(error)
    return comm.broadcast_object(result) if broadcast else result


def agree(comm: Communicator, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it raises a user error on any rank, every rank raises the
    first such error (named by rank), so no rank is left waiting in a collective."""
    result, error = None, None
    try:
        result = fn()
    except USER_ERRORS as err:
        error = str(err)
    # the lowest failing rank (an all-reduce of one number), then its message from it alone:
    # no collective carries one entry per rank
    first = int(comm.allreduce_min(np.array([comm.rank if error is not None else comm.size],
                                            np.int64))[0])
    if first < comm.size:
        message = comm.broadcast_object(error, root=first)
        raise SharedUserError(message if comm.size == 1 else f"rank {first}: {message}")
    return result
