"""mlGeNN-style import path: ``from distsnn.communicators import MPI``."""
from ..communicator import MPI, Communicator, MPICommunicator, SerialCommunicator

__all__ = ["MPI", "Communicator", "MPICommunicator", "SerialCommunicator"]
