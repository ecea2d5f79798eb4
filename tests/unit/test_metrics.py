"""Classification metrics against hand-computed values (and scikit-learn semantics)."""

from __future__ import annotations

import pytest

from p2m_engine.eval.metrics import accuracy, classification_metrics, macro_f1, per_label_recall


def test_accuracy_and_macro_f1_hand_computed() -> None:
    gold = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    assert accuracy(gold, pred) == pytest.approx(0.75)
    f1_a = 2 / 3  # tp=1, fp=0, fn=1
    f1_b = 0.8  # tp=2, fp=1, fn=0
    assert macro_f1(gold, pred) == pytest.approx((f1_a + f1_b) / 2)
    assert classification_metrics(gold, pred) == pytest.approx({"accuracy": 0.75, "macro_f1": (f1_a + f1_b) / 2})


def test_label_predicted_but_absent_from_gold_counts_with_f1_zero() -> None:
    gold = ["a", "a"]
    pred = ["a", "c"]
    # labels {a, c}: F1_a = 2*1/(2*1+0+1) = 2/3, F1_c = 0
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 0.0) / 2)
    assert accuracy(gold, pred) == pytest.approx(0.5)


def test_gold_label_never_predicted_counts_with_f1_zero() -> None:
    gold = ["a", "b"]
    pred = ["a", "a"]
    # F1_a = 2/(2+1+0) = 2/3, F1_b = 0
    assert macro_f1(gold, pred) == pytest.approx(1 / 3)


def test_perfect_and_all_wrong() -> None:
    gold = ["x", "y", "z"]
    assert accuracy(gold, gold) == 1.0
    assert macro_f1(gold, gold) == 1.0
    wrong = ["y", "z", "x"]
    assert accuracy(gold, wrong) == 0.0
    assert macro_f1(gold, wrong) == 0.0


def test_empty_lists() -> None:
    assert accuracy([], []) == 0.0
    assert macro_f1([], []) == 0.0
    assert per_label_recall([], []) == {}


def test_per_label_recall() -> None:
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "d"]
    assert per_label_recall(gold, pred) == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.0})
    # Only gold labels get a recall; a label that is only predicted does not.
    assert "d" not in per_label_recall(gold, pred)


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        (["a", "a", "b", "b"], ["a", "b", "b", "b"]),
        (["a", "b", "c", "a", "b", "c"], ["a", "c", "b", "a", "d", "c"]),
        (["pos", "neg", "neg", "neg"], ["neg", "neg", "neg", "neg"]),
        (["x"], ["y"]),
    ],
)
def test_matches_sklearn(gold: list[str], pred: list[str]) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    assert accuracy(gold, pred) == pytest.approx(metrics.accuracy_score(gold, pred))
    assert macro_f1(gold, pred) == pytest.approx(metrics.f1_score(gold, pred, average="macro", zero_division=0))
    labels = sorted(set(gold))
    recalls = metrics.recall_score(gold, pred, labels=labels, average=None, zero_division=0)
    assert per_label_recall(gold, pred) == pytest.approx(dict(zip(labels, recalls)))


def test_confusion_matrix_rows_are_gold_columns_are_predictions() -> None:
    from p2m_engine.eval.metrics import confusion_matrix

    order, m = confusion_matrix(["a", "a", "b", "c"], ["a", "b", "b", "a"], labels=["b", "a"])
    assert order == ["b", "a", "c"]
    assert m == [[1, 0, 0], [1, 1, 0], [0, 1, 0]]
    assert sum(map(sum, m)) == 4
