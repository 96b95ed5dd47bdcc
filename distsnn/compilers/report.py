"""What one evaluate/predict call measured, reduced over the ranks: built in one place."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from distsnn.compilers.statistics import spike_report
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
    for checkpoint, by_output in per_checkpoint.items():
        for metrics_of_output in by_output.values():
            for metric in metrics_of_output:
                metric.reduce(comm)
        report.metrics[checkpoint] = {o.name: {m.name: m.as_dict() for m in ms}
                                      for o, ms in by_output.items()}
    reduced = comm.allreduce_sum(np.asarray(local_spikes, np.int64))
    report.spikes = spike_report(network, int(reduced[0]), timesteps,
                                 dict(zip(names, (int(v) for v in reduced[2:]))),
                                 int(reduced[1]))
    report.examples = report.spikes["examples"]
    report.reduce_seconds = time.perf_counter() - start
    report.reduce_cpu_seconds = time.process_time() - cpu
    return report
