"""Long evaluations as restartable jobs: stream each rank's examples in chunks, journal the
counts after every chunk, stop cleanly on SIGTERM/SIGUSR1/SIGINT and resume from the journal.

Memory per rank is bounded by one chunk (``chunk_size`` examples as float32 plus the
stored copy of the same rows), whatever the dataset size. The examples are split between
ranks in contiguous runs; on resume only those not yet in the journal are split.
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from distsnn.compilers.chunks import ChunkResult, EvaluationStopped, PredictionRows
from distsnn.compilers.compiled_network import CompiledInferenceNetwork
from distsnn.data.events import is_raster_network, raster_to_network
from distsnn.data.inputs import InputScaling, check_finite
from distsnn.errors import UserError
from distsnn.jobs.journal import Journal, remaining, split_ranges
from distsnn.jobs.signals import Interrupted, StopRequest
from distsnn.layout import to_network_layout
from distsnn.parallel.communicator import Communicator
from distsnn.parallel.liveness import DEFAULT_PEER_TIMEOUT, PeerWatch
from distsnn.utils.timings import Timings

#: Examples per rank read, converted and journaled at a time (default of --chunk-size).
DEFAULT_CHUNK = 1024


@dataclass
class JobOptions:
    """How to stream and checkpoint an evaluation."""

    chunk_size: int = DEFAULT_CHUNK
    journal: Optional[Path] = None     # None: no journal (nothing to resume)
    resume: bool = False               # True: a journal must exist
    scaling: InputScaling = field(default_factory=InputScaling)
    stop: Optional[StopRequest] = None
    fingerprint: dict = field(default_factory=dict)
    resume_command: str = "rerun the same command"
    #: seconds a rank may go unheard before the job ends (0: no watchdog), see
    #: :mod:`distsnn.parallel.liveness`
    peer_timeout: float = DEFAULT_PEER_TIMEOUT
    #: image folders: ``resize``, ``crop``, ``class_names`` (see :mod:`distsnn.data.images`)
    images: dict = field(default_factory=dict)
    #: readout timesteps at which each example's output is kept (journaled with the counts)
    record: list[int] = field(default_factory=list)


@dataclass
class JobOutcome:
    """What the streamed evaluation did besides its metrics."""

    resumed_examples: int = 0
    journal: Optional[Journal] = None
    #: this rank's per-example rows (``options.record``); rank 0's include the journal's
    predictions: list[PredictionRows] = field(default_factory=list)


#: ``read(ranges, chunk) -> iterator of (first_row, x, y)`` of the rows in ranges
RowReader = Callable[[list, int], Iterator[tuple[int, np.ndarray, np.ndarray]]]


def evaluate_job(compiled: CompiledInferenceNetwork, read: RowReader, n_examples: int,
                 where: str, check_labels: Callable[[np.ndarray, int], None], metrics: list,
                 callbacks: list, comm: Communicator, options: JobOptions,
                 timings: Optional[Timings] = None) -> JobOutcome:
    """Evaluate every example once over all ranks, journaling and resuming as configured
    (``timings``: gets the time spent opening and writing the journal, ``journal_open``
    and ``journal_write``)."""
    outcome = JobOutcome()
    done: Optional[ChunkResult] = None
    if options.journal is not None:
        with timings.measure("journal_open") if timings is not None else nullcontext():
            outcome.journal, done = Journal.open(options.journal, options.fingerprint, comm,
                                                 must_exist=options.resume)
    if done is not None:
        outcome.predictions = list(done.predictions)
    done_ranges = comm.broadcast_object(done.ranges if done is not None else [])
    outcome.resumed_examples = sum(b - a for a, b in done_ranges)
    if outcome.resumed_examples and comm.rank == 0:  # a requeued job's log says it resumed
        sys.stderr.write(f"distsnn: resuming from the journal {options.journal}: "
                         f"{outcome.resumed_examples} of {n_examples} examples already done\n")
        sys.stderr.flush()
    mine = split_ranges(remaining(done_ranges, n_examples), comm.rank, comm.size)
    inp, out = compiled.inputs[0], compiled.outputs[0]
    shape = inp.shape
    raster = is_raster_network(compiled.network)

    def chunks():
        for first, x, y in read(mine, options.chunk_size):
            if raster:  # [N, T, ...] event frames
                x = raster_to_network(x, compiled.network, where)
            else:
                x = options.scaling.apply(to_network_layout(x, compiled.network))
            check_finite(x, first, where)
            check_labels(y, first)
            indices = np.arange(first, first + len(x), dtype=np.int64)
            yield indices, {inp: x if raster else x.reshape((len(x),) + shape)}, {out: y}

    stop = options.stop
    watch = PeerWatch(comm, options.peer_timeout,
                      None if options.journal is None else str(options.journal))

    def stopping() -> bool:
        return (stop is not None and stop.requested()) or watch.expired.is_set()

    def on_chunk(result: ChunkResult) -> None:
        outcome.predictions.extend(result.predictions)
        if outcome.journal is not None:
            with timings.measure("journal_write") if timings is not None else nullcontext():
                outcome.journal.append(result)

    try:
        with watch, stop.deferred_stop() if stop is not None else nullcontext():
            compiled.evaluate_stream(
                chunks(), n_examples, metrics, callbacks,
                on_chunk=on_chunk, stop=stopping, initial=done if comm.rank == 0 else None,
                record=options.record)
    except UserError:
        if outcome.journal is not None:
            outcome.journal.discard_if_empty()
        raise
    except EvaluationStopped:
        if outcome.journal is not None:
            outcome.journal.close()
        if watch.expired.is_set():
            raise watch.lost() from None
        raise Interrupted(stop.signum, _stopped_message(stop.signum, options)) from None
    if outcome.journal is not None:
        outcome.journal.close()
    return outcome


def _stopped_message(signum: int, options: JobOptions) -> str:
    import signal
    name = signal.Signals(signum).name
    if options.journal is None:
        return f"stopped by {name}; nothing was saved (no journal)"
    return (f"stopped by {name}; progress saved in {options.journal}; {options.resume_command} "
            f"(or add --resume) to continue where it stopped")


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise UserError(f"--chunk-size must be at least 1 example, not {chunk_size}")
