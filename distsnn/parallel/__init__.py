"""Foundation: running on many ranks. The communicator (the only importer of mpi4py, when a
communicator is first made), rank agreement on user errors, sharding, node-local ranks and
GPU binding, and the watchdog for hung peers. ``distsnn.communicators`` is mlGeNN's import
path of the communicator."""
