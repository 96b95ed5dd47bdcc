"""Metrics kept as counts that sum across ranks.

Each metric accumulates local counts with :meth:`Metric.update`; :meth:`Metric.reduce`
all-reduces them once at the end (never per batch, so uneven shards cannot deadlock), after
which :attr:`Metric.result` is global on every rank.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Optional, Union

import numpy as np

from distsnn.parallel.communicator import Communicator


class Metric(ABC):
    """Base class: ``update`` with labels and readouts, ``result`` when done."""

    name: str = "metric"

    @abstractmethod
    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Add one batch: ``y_true`` labels or targets, ``y_pred`` readouts ``(b, ...)``."""

    @abstractmethod
    def counts(self) -> np.ndarray:
        """The accumulated counts as one array."""

    @abstractmethod
    def set_counts(self, counts: np.ndarray) -> None: ...

    @property
    @abstractmethod
    def result(self) -> Optional[float]: ...

    def reduce(self, comm: Communicator) -> None:
        """Sum the counts over ranks (collective: every rank must call it)."""
        self.set_counts(comm.allreduce_sum(self.counts()))

    def as_dict(self) -> dict:
        return {"result": self.result}

    def __format__(self, spec: str) -> str:
        return format(self.result, spec) if self.result is not None else "None"

    def __str__(self) -> str:
        return format(self, "")


def _class_scores(y_pred: np.ndarray) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    return y_pred.reshape(y_pred.shape[0], -1)


def _labels(y_true: np.ndarray, classes: int) -> np.ndarray:
    """Integer labels, checked against the number of classes."""
    labels = np.asarray(y_true).reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"label {bad} is out of range for an output with {classes} classes")
    return labels


def _label_rank(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rank of the true class among the scores; ties rank the lower index first (like argmax)."""
    labels = _labels(y_true, scores.shape[1])
    own = scores[np.arange(len(labels)), labels][:, None]
    index = np.arange(scores.shape[1])[None, :]
    return ((scores > own) | ((scores == own) & (index < labels[:, None]))).sum(axis=1)


class SparseCategoricalAccuracy(Metric):
    """Fraction of examples whose largest readout is the label (ties: lowest index)."""

    name = "sparse_categorical_accuracy"

    def __init__(self):
        self.correct = 0
        self.total = 0

    def update(self, y_true, y_pred):
        scores = _class_scores(y_pred)  # argmax: the first of tied maxima, as _label_rank
        self.correct += int((scores.argmax(axis=1) == _labels(y_true, scores.shape[1])).sum())
        self.total += len(scores)

    def counts(self):
        return np.array([self.correct, self.total], np.int64)

    def set_counts(self, counts):
        self.correct, self.total = (int(c) for c in counts)

    @property
    def result(self):
        return self.correct / self.total if self.total else None

    def as_dict(self):
        return {"result": self.result, "correct": self.correct, "total": self.total}


class TopKAccuracy(SparseCategoricalAccuracy):
    """Fraction of examples whose label is among the k largest readouts."""

    def __init__(self, k: int = 5):
        super().__init__()
        self.k = k
        self.name = f"top_{k}_accuracy"

    def update(self, y_true, y_pred):
        ranks = _label_rank(y_true, _class_scores(y_pred))
        self.correct += int((ranks < self.k).sum())
        self.total += len(ranks)


class MeanSquareError(Metric):
    """Mean over every element of ``(y_true - y_pred)**2`` (not mlGeNN's MSE divided by B)."""

    name = "mean_square_error"

    def __init__(self):
        self.sum_sq = 0.0
        self.elements = 0

    def update(self, y_true, y_pred):
        y_true = np.asarray(y_true, np.float64)
        y_pred = np.asarray(y_pred, np.float64)
        if y_true.shape != y_pred.shape:
            y_true = y_true.reshape(y_pred.shape) if y_true.size == y_pred.size else y_true
        if y_true.shape != y_pred.shape:
            raise ValueError(f"mean_square_error: targets of shape {y_true.shape} do not match "
                             f"readouts of shape {y_pred.shape}")
        self.sum_sq += float(((y_true - y_pred) ** 2).sum())
        self.elements += y_true.size

    def counts(self):
        return np.array([self.sum_sq, self.elements], np.float64)

    def set_counts(self, counts):
        self.sum_sq, self.elements = float(counts[0]), int(counts[1])

    @property
    def result(self):
        return self.sum_sq / self.elements if self.elements else None


class ConfusionMatrix(Metric):
    """``matrix[true, predicted]`` counts; ``result`` is the accuracy."""

    name = "confusion_matrix"

    def __init__(self, num_classes: Optional[int] = None):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes or 0,) * 2, np.int64)

    def update(self, y_true, y_pred):
        scores = _class_scores(y_pred)
        if self.matrix.shape[0] == 0:
            self.num_classes = scores.shape[1]
            self.matrix = np.zeros((self.num_classes,) * 2, np.int64)
        labels = np.asarray(y_true).reshape(-1).astype(np.int64)
        _label_rank(labels, scores)  # validates the label range
        np.add.at(self.matrix, (labels, scores.argmax(axis=1)), 1)

    def counts(self):
        return self.matrix

    def set_counts(self, counts):
        self.matrix = np.asarray(counts, np.int64)

    @property
    def result(self):
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else None

    def as_dict(self):
        return {"result": self.result, "matrix": self.matrix.tolist()}


_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "accuracy": SparseCategoricalAccuracy,
    "mean_square_error": MeanSquareError,
    "mse": MeanSquareError,
    "confusion_matrix": ConfusionMatrix,
}

MetricSpec = Union[str, Metric]


def make_metric(spec: MetricSpec) -> Metric:
    """A fresh metric from a name (``"top_5_accuracy"`` works for any k) or a copy of an object."""
    if isinstance(spec, Metric):
        return copy.deepcopy(spec)
    name = spec.lower()
    if name.startswith("top_") and name.endswith("_accuracy"):
        return TopKAccuracy(int(name[4:-9]))
    if name not in _BY_NAME:
        raise ValueError(f"unknown metric {spec!r}; use one of {sorted(_BY_NAME)} or "
                         f"top_K_accuracy")
    return _BY_NAME[name]()
