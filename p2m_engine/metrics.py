"""Classification metrics computed by hand (no scikit-learn needed): accuracy, macro-F1, per-label recall."""

from __future__ import annotations


def accuracy(gold: list[str], pred: list[str]) -> float:
    if not gold:
        return 0.0
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def per_label_recall(gold: list[str], pred: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label in sorted(set(gold)):
        idx = [i for i, g in enumerate(gold) if g == label]
        out[label] = sum(pred[i] == label for i in idx) / len(idx)
    return out


def macro_f1(gold: list[str], pred: list[str]) -> float:
    """Unweighted mean of per-label F1 over labels seen in gold or predictions (as scikit-learn does)."""
    labels = sorted(set(gold) | set(pred))
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return sum(scores) / len(scores)


def classification_metrics(gold: list[str], pred: list[str]) -> dict[str, float]:
    return {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred)}


def confusion_matrix(gold: list[str], pred: list[str], labels: list[str] | None = None) -> tuple[list[str], list[list[int]]]:
    """Counts of (gold, predicted) pairs: row i is gold label i, column j is predicted label j.

    Args:
        gold: the true labels.
        pred: the predicted labels, aligned with `gold`.
        labels: the row/column order; labels seen in the data but missing here are appended, sorted.

    Returns:
        The label order and the matrix as a list of rows.
    """
    order = list(dict.fromkeys(labels or []))
    order += sorted((set(gold) | set(pred)) - set(order))
    index = {label: i for i, label in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for g, p in zip(gold, pred):
        matrix[index[g]][index[p]] += 1
    return order, matrix
