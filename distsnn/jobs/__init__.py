"""Evaluation as a distributed, restartable job: where the network comes from
(:mod:`~distsnn.jobs.network_source`: a file, or a model rank 0 converts), the evaluation of
a dataset file on every rank (:mod:`~distsnn.jobs.evaluate`), streamed in journaled chunks
(:mod:`~distsnn.jobs.stream`, :mod:`~distsnn.jobs.journal`) that stop cleanly on signals
(:mod:`~distsnn.jobs.signals`)."""
