"""One rank's local counts over a set of examples (what a journal records per chunk), and
the example-index ranges they cover."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from distsnn.compilers.statistics import SpikeStats
from distsnn.network import Network


def add_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of two metric count arrays (an empty confusion matrix takes the other's shape)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return b.copy()
    return a if b.size == 0 else a + b


class EvaluationStopped(Exception):
    """``evaluate_stream`` stopped early on request; ``examples`` were done on this rank."""

    def __init__(self, examples: int):
        super().__init__(f"stopped after {examples} examples")
        self.examples = examples


@dataclass
class PredictionRows:
    """Per-example readouts of a network's first output over some examples: global
    ``index`` (n,), ``label`` (n,), ``predicted`` class (n, readouts) and the readout
    ``values`` (n, readouts, classes) as float32, one column per readout timestep."""

    index: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, index: np.ndarray, label: np.ndarray, scores: list[np.ndarray]
           ) -> "PredictionRows":
        """Rows from one batch's readouts (one ``(n, classes)`` array per readout timestep);
        the class is the metrics' argmax (the first of tied maxima), taken before float32."""
        flat = [np.asarray(s).reshape(len(index), -1) for s in scores]
        return cls(np.asarray(index, np.int64), np.asarray(label).reshape(-1).astype(np.int64),
                   np.stack([s.argmax(axis=1) for s in flat], axis=1).astype(np.int32),
                   np.stack(flat, axis=1).astype(np.float32))

    @classmethod
    def concat(cls, parts: list["PredictionRows"], readouts: int, classes: int
               ) -> "PredictionRows":
        """All rows of ``parts`` in order (empty arrays of the right shape for none)."""
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64),
                       np.zeros((0, readouts), np.int32),
                       np.zeros((0, readouts, classes), np.float32))
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("index", "label", "predicted", "values")))

    def sorted(self) -> "PredictionRows":
        """The rows in global example order."""
        order = np.argsort(self.index, kind="stable")
        return PredictionRows(self.index[order], self.label[order], self.predicted[order],
                              self.values[order])


@dataclass
class ChunkResult:
    """One rank's local counts over some examples: what a journal records per chunk.

    ``ranges``: the examples done, as sorted ``[start, stop)`` runs of global indices;
    ``metrics``: checkpoint -> output name -> metric name -> count array; ``spikes``:
    population -> spikes; ``synaptic_operations``; ``predictions``: per-example rows when
    they are recorded.
    """

    ranges: list[tuple[int, int]]
    metrics: dict[int, dict[str, dict[str, np.ndarray]]]
    spikes: dict[str, int]
    synaptic_operations: int = 0
    predictions: list[PredictionRows] = field(default_factory=list)

    @classmethod
    def empty(cls, names: list[str]) -> "ChunkResult":
        return cls([], {}, {n: 0 for n in names})

    @classmethod
    def of(cls, indices: np.ndarray, metrics: dict, stats: SpikeStats,
           network: Network, predictions: Optional[list[PredictionRows]] = None
           ) -> "ChunkResult":
        counts = {c: {o.name: {m.name: m.counts() for m in ms} for o, ms in by_output.items()}
                  for c, by_output in metrics.items()}
        return cls(index_ranges(indices), counts, stats.totals(),
                   stats.synaptic_operations(network), list(predictions or []))

    def plus(self, other: "ChunkResult") -> "ChunkResult":
        metrics = {c: {o: dict(ms) for o, ms in by_output.items()}
                   for c, by_output in self.metrics.items()}
        for c, by_output in other.metrics.items():
            for o, ms in by_output.items():
                into = metrics.setdefault(c, {}).setdefault(o, {})
                for name, counts in ms.items():
                    into[name] = add_counts(into.get(name, np.zeros(0)), counts)
        spikes = {n: self.spikes.get(n, 0) + other.spikes.get(n, 0)
                  for n in {**self.spikes, **other.spikes}}
        return ChunkResult(merge_ranges(self.ranges + other.ranges), metrics, spikes,
                           self.synaptic_operations + other.synaptic_operations,
                           self.predictions + other.predictions)

    @property
    def examples(self) -> int:
        return sum(b - a for a, b in self.ranges)

    def spike_vector(self, names: list[str]) -> np.ndarray:
        """[examples, synaptic operations, spikes of each named population]."""
        return np.array([self.examples, self.synaptic_operations]
                        + [self.spikes.get(n, 0) for n in names], np.int64)


def index_ranges(indices: np.ndarray) -> list[tuple[int, int]]:
    """Sorted global indices as ``[start, stop)`` runs of consecutive values."""
    indices = np.sort(np.asarray(indices, np.int64))
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [indices.size]])
    return [(int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops)]


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ranges with touching ones joined."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged
