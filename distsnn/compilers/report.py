"""What one evaluate/predict call measured, reduced over the ranks: built in one place."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from distsnn.compilers.statistics import spike_report
from distsnn.metrics import Metric
from distsnn.network import Network
from distsnn.parallel.communicator import Communicator


@dataclass
class EvaluationReport:
    """Everything one evaluate/predict call measured (global on every rank)."""

    #: checkpoint -> output name -> metric name -> {"result": ..., counts}
    metrics: dict[int, dict[str, dict]] = field(default_factory=dict)
    spikes: dict = field(default_factory=dict)
    examples: int = 0
    seconds: float = 0.0
    reduce_seconds: float = 0.0
    #: this rank's CPU seconds of the evaluation and of the reduction
    cpu_seconds: float = 0.0
    reduce_cpu_seconds: float = 0.0
    #: this rank's wall and CPU seconds from the evaluation's start to its first batch's
    #: readout (reading the first chunk, the first steps), None if it had none
    first_batch: Optional[tuple[float, float]] = None


class MetricsResult(dict):
    """Metrics keyed by output population; with one output also by metric name
    (``metrics["mean_square_error"]``, as the mlGeNN documentation's example reads them)."""

    def __missing__(self, key):
        if isinstance(key, str) and len(self) == 1:
            only = next(iter(self.values()))
            found = only if isinstance(only, dict) else {only.name: only}
            if key in found:
                return found[key]
            for pop in self:
                if pop.name == key:
                    return self[pop]
        raise KeyError(key)



def final_metrics(per_checkpoint: dict, timesteps: int) -> MetricsResult:
    """The metrics of the last readout: per output its metric, or a dict of several."""
    return MetricsResult({o: ms[0] if len(ms) == 1 else {m.name: m for m in ms}
                          for o, ms in per_checkpoint[timesteps].items()})


def reduce_report(per_checkpoint: dict, local_spikes: np.ndarray, names: list[str],
                  network: Network, timesteps: int, comm: Communicator,
                  seconds: float, cpu_seconds: float = 0.0) -> EvaluationReport:
    """Reduce this rank's metrics (in place) and spike counts over all ranks.

    ``per_checkpoint``: checkpoint -> output -> metrics; ``local_spikes``: this rank's
    [examples, synaptic operations, spikes of each population in ``names``]. ``seconds``: the
    local evaluation time (``cpu_seconds`` its CPU time), recorded beside the time the
    reduction takes.
    """
    start, cpu = time.perf_counter(), time.process_time()
    report = EvaluationReport(seconds=seconds, cpu_seconds=cpu_seconds)
    metrics = [m for by_output in per_checkpoint.values() for ms in by_output.values()
               for m in ms]
    reduced = reduce_together(metrics, np.asarray(local_spikes, np.int64), comm)
    for checkpoint, by_output in per_checkpoint.items():
        report.metrics[checkpoint] = {o.name: {m.name: m.as_dict() for m in ms}
                                      for o, ms in by_output.items()}
    report.spikes = spike_report(network, int(reduced[0]), timesteps,
                                 dict(zip(names, (int(v) for v in reduced[2:]))),
                                 int(reduced[1]))
    report.examples = report.spikes["examples"]
    report.reduce_seconds = time.perf_counter() - start
    report.reduce_cpu_seconds = time.process_time() - cpu
    return report


def reduce_together(metrics: list[Metric], extra: np.ndarray, comm: Communicator) -> np.ndarray:
    """Sum every metric's counts (in place) and the int64 array ``extra`` over the ranks in
    one all-reduce per number type (integers, floats), not one per metric: a rate-coded run
    has ~60 metrics (every readout and accuracy-curve checkpoint), and each all-reduce waits
    for the slowest rank. Returns the summed ``extra``.

    A rank without examples may hold an empty confusion matrix: the sizes are agreed first
    (one more all-reduce) and such counts take the others' shape."""
    counts = [np.asarray(m.counts()) for m in metrics]
    sizes = [int(c) for c in comm.allreduce_max(np.array([c.size for c in counts] or [0],
                                                          np.int64))][:len(counts)]
    integer = [c.dtype.kind in "biu" for c in counts]
    packed = {True: [extra.reshape(-1)], False: []}
    for c, size, is_int in zip(counts, sizes, integer):
        flat = np.zeros(size, np.int64 if is_int else np.float64)
        flat[:c.size] = c.reshape(-1)
        packed[is_int].append(flat)
    summed = {kind: comm.allreduce_sum(np.concatenate(parts)) for kind, parts in packed.items()
              if parts}
    offsets = {True: extra.size, False: 0}
    for metric, c, size, is_int in zip(metrics, counts, sizes, integer):
        flat = summed[is_int][offsets[is_int]:offsets[is_int] + size]
        offsets[is_int] += size
        side = math.isqrt(size)
        shape = c.shape if c.size == size else ((side, side) if c.ndim == 2 else (size,))
        metric.set_counts(flat.reshape(shape))
    return summed[True][:extra.size]
