"""mlGeNN-style import path: ``from distsnn.communicators import MPI``.

Importing it under an MPI launcher makes a rank that fails before its communicator exists
end the whole job (see :func:`distsnn.parallel.communicator.install_early_abort_hook`).
"""
from distsnn.parallel.communicator import (
    MPI,
    Communicator,
    MPICommunicator,
    SerialCommunicator,
    install_early_abort_hook,
)

install_early_abort_hook()

__all__ = ["MPI", "Communicator", "MPICommunicator", "SerialCommunicator"]
