"""Metrics kept as counts: tie rules, true element-wise MSE, confusion matrix, merging the
counts of several ranks, and label validation."""
from __future__ import annotations

import numpy as np
import pytest

from distsnn.metrics import (
    ConfusionMatrix,
    MeanSquareError,
    Metric,
    SparseCategoricalAccuracy,
    TopKAccuracy,
    make_metric,
)


class SumOfRanks:
    """A communicator stand-in whose allreduce adds the counts of the other (fake) ranks."""

    size = 2

    def __init__(self, others):
        self.others = others

    def allreduce_sum(self, value):
        total = np.array(value, copy=True)
        for other in self.others:
            total = total + other.counts()
        return total


# --------------------------------------------------------------------------------------
# accuracy and top-k
# --------------------------------------------------------------------------------------
def test_accuracy_counts_argmax_matches():
    m = SparseCategoricalAccuracy()
    m.update(np.array([0, 1, 2, 2]), np.array([[3, 1, 0], [0, 5, 1], [1, 2, 0], [0, 0, 9]]))
    assert (m.correct, m.total) == (3, 4)
    assert m.result == 0.75
    assert m.as_dict() == {"result": 0.75, "correct": 3, "total": 4}


def test_accuracy_ties_go_to_the_lowest_index_like_argmax():
    pred = np.array([[2, 2, 1], [2, 2, 1], [0, 0, 0], [0, 0, 0], [1, 3, 3], [1, 3, 3]])
    labels = np.array([0, 1, 0, 2, 1, 2])
    m = SparseCategoricalAccuracy()
    m.update(labels, pred)
    expected = (pred.argmax(axis=1) == labels)
    assert expected.tolist() == [True, False, True, False, True, False]
    assert (m.correct, m.total) == (3, 6)


def test_accuracy_flattens_multidimensional_readouts():
    m = SparseCategoricalAccuracy()
    pred = np.zeros((2, 2, 3))
    pred[0, 1, 2] = 1.0   # flat index 5
    pred[1, 0, 0] = 1.0   # flat index 0
    m.update(np.array([5, 3]), pred)
    assert (m.correct, m.total) == (1, 2)


def test_accuracy_accepts_label_columns_and_float_labels():
    m = SparseCategoricalAccuracy()
    m.update(np.array([[1.0], [0.0]]), np.array([[0, 1], [0, 1]]))
    assert (m.correct, m.total) == (1, 2)


@pytest.mark.parametrize("k,expected", [(1, 2), (2, 3), (3, 4), (4, 5)])
def test_top_k_with_ties(k, expected):
    pred = np.array([[5, 5, 5, 1], [5, 5, 5, 1], [5, 5, 5, 1], [1, 2, 3, 4], [4, 3, 2, 1]])
    labels = np.array([0, 1, 2, 3, 3])
    # ranks with ties broken by index: 0, 1, 2, 0, 3
    m = TopKAccuracy(k)
    m.update(labels, pred)
    assert (m.correct, m.total) == (expected, 5)
    assert m.name == f"top_{k}_accuracy"


def test_top_1_equals_accuracy_on_random_scores():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (200, 10))  # many ties
    labels = rng.integers(0, 10, 200)
    top1, acc = TopKAccuracy(1), SparseCategoricalAccuracy()
    top1.update(labels, pred)
    acc.update(labels, pred)
    assert top1.correct == acc.correct == int((pred.argmax(axis=1) == labels).sum())
    for k in (2, 5):
        topk = TopKAccuracy(k)
        topk.update(labels, pred)
        # reference: position of the label in a stable descending sort
        order = np.argsort(-pred, axis=1, kind="stable")
        ranks = np.argmax(order == labels[:, None], axis=1)
        assert topk.correct == int((ranks < k).sum())


# --------------------------------------------------------------------------------------
# mean square error
# --------------------------------------------------------------------------------------
def test_mse_is_element_wise_over_batches_of_different_sizes():
    rng = np.random.default_rng(1)
    y1, p1 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    y2, p2 = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    m = MeanSquareError()
    m.update(y1, p1)
    m.update(y2, p2)
    everything = np.mean((np.concatenate([y1, y2]) - np.concatenate([p1, p2])) ** 2)
    assert m.result == pytest.approx(everything, rel=1e-12)
    # mlGeNN's quirk: sum of per-batch means / number of examples (about MSE / B)
    quirk = (np.mean((y1 - p1) ** 2) + np.mean((y2 - p2) ** 2)) / 4
    assert m.result != pytest.approx(quirk, rel=1e-3)
    assert m.counts().tolist() == [pytest.approx(everything * 16), 16]


def test_mse_hand_computed():
    m = MeanSquareError()
    m.update(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))      # 1 + 4
    m.update(np.array([[0.0, 0.0], [3.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 0.0]]))  # 1 + 9
    assert m.result == pytest.approx(15 / 6)


def test_mse_shapes():
    m = MeanSquareError()
    m.update(np.arange(6.0), np.arange(6.0).reshape(2, 3))  # same size: reshaped
    assert m.result == 0.0
    with pytest.raises(ValueError, match="do not match"):
        m.update(np.zeros((2, 2)), np.zeros((2, 3)))


# --------------------------------------------------------------------------------------
# confusion matrix
# --------------------------------------------------------------------------------------
def test_confusion_matrix_counts_true_by_predicted():
    m = ConfusionMatrix()
    m.update(np.array([0, 1, 2, 2, 1]), np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1],
                                                  [0, 1, 0], [0, 0, 0]]))
    assert m.matrix.tolist() == [[1, 0, 0], [2, 0, 0], [0, 1, 1]]
    assert m.result == pytest.approx(2 / 5)
    assert m.as_dict()["matrix"] == m.matrix.tolist()


def test_confusion_matrix_with_declared_classes():
    m = ConfusionMatrix(num_classes=4)
    assert m.result is None
    m.update(np.array([3]), np.array([[0, 0, 0, 1]]))
    assert m.matrix.shape == (4, 4) and m.matrix[3, 3] == 1


# --------------------------------------------------------------------------------------
# merging counts (as the all-reduce over ranks does)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sparse_categorical_accuracy", "top_3_accuracy",
                                  "mean_square_error", "confusion_matrix"])
def test_counts_of_two_ranks_sum_to_the_single_process_result(name):
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 5, (37, 6)).astype(np.float64)
    if name == "mean_square_error":
        labels = rng.normal(size=(37, 6))
    else:
        labels = rng.integers(0, 6, 37)
    whole = make_metric(name)
    for s in range(0, 37, 5):                       # batches of 5, last one partial
        whole.update(labels[s:s + 5], pred[s:s + 5])
    rank0, rank1 = make_metric(name), make_metric(name)
    rank0.update(labels[:19], pred[:19])            # uneven shards: 19 and 18
    for s in range(19, 37, 4):
        rank1.update(labels[s:s + 4], pred[s:s + 4])
    snapshot0, snapshot1 = make_metric(name), make_metric(name)
    snapshot0.set_counts(rank0.counts())
    snapshot1.set_counts(rank1.counts())
    rank0.reduce(SumOfRanks([snapshot1]))
    rank1.reduce(SumOfRanks([snapshot0]))
    for merged in (rank0, rank1):
        assert merged.result == pytest.approx(whole.result, rel=1e-12)
        np.testing.assert_allclose(merged.counts(), whole.counts())


def test_empty_metric_has_no_result():
    for name in ("accuracy", "mse", "top_2_accuracy", "confusion_matrix"):
        m = make_metric(name)
        assert m.result is None
        m.set_counts(m.counts())
        assert m.result is None


def test_reduce_with_serial_communicator_keeps_counts():
    from distsnn.parallel.communicator import SerialCommunicator
    m = SparseCategoricalAccuracy()
    m.update(np.array([1, 0]), np.array([[0, 1], [0, 1]]))
    m.reduce(SerialCommunicator())
    assert (m.correct, m.total) == (1, 2)


# --------------------------------------------------------------------------------------
# label validation and construction
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", [SparseCategoricalAccuracy, lambda: TopKAccuracy(2),
                                    ConfusionMatrix])
@pytest.mark.parametrize("bad", [3, 10, -1])
def test_label_out_of_range_is_an_error(metric, bad):
    m = metric()
    with pytest.raises(ValueError, match=rf"label {bad} is out of range.*3 classes"):
        m.update(np.array([0, bad]), np.zeros((2, 3)))


def test_make_metric_names_and_objects():
    assert isinstance(make_metric("accuracy"), SparseCategoricalAccuracy)
    assert isinstance(make_metric("Sparse_Categorical_Accuracy"), SparseCategoricalAccuracy)
    assert isinstance(make_metric("mse"), MeanSquareError)
    top = make_metric("top_7_accuracy")
    assert isinstance(top, TopKAccuracy) and top.k == 7
    with pytest.raises(ValueError, match="unknown metric"):
        make_metric("f1_score")
    original = ConfusionMatrix(num_classes=3)
    copy = make_metric(original)
    assert isinstance(copy, Metric) and copy is not original
    copy.update(np.array([0]), np.array([[1, 0, 0]]))
    assert original.matrix.sum() == 0   # independent per output / checkpoint
