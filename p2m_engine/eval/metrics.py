"""Metrics for every task type, computed by hand where that is simple: classification (accuracy, macro-F1,
per-label recall), extractive QA (SQuAD exact match and F1 with the standard answer normalization) and text
generation (chrF++ through sacrebleu, and exact match). All scores are fractions in [0, 1]."""

from __future__ import annotations

import re
import string
from collections import Counter


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


# --- extractive QA: the official SQuAD v1.1 evaluation script's normalization and scores ---------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, fold white space (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(gold: str, pred: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:
        return float(g == p)
    common = sum((Counter(g) & Counter(p)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(gold: list[str | list[str]], pred: list[str]) -> dict[str, float]:
    """SQuAD exact match and token F1; a gold entry may list several acceptable answers (the best counts)."""
    if not gold:
        return {"exact_match": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for g, p in zip(gold, pred):
        answers = [g] if isinstance(g, str) else list(g)
        em += max(float(normalize_answer(a) == normalize_answer(p)) for a in answers)
        f1 += max(_token_f1(a, p) for a in answers)
    return {"exact_match": em / len(gold), "f1": f1 / len(gold)}


# --- text generation ---------------------------------------------------------------------------------------


def chrf_pp(gold: list[str], pred: list[str]) -> float:
    """Corpus chrF++ (character 6-grams + word 2-grams, beta 2) as sacrebleu computes it, as a fraction."""
    from sacrebleu.metrics import CHRF

    if not gold:
        return 0.0
    return float(CHRF(word_order=2).corpus_score(list(pred), [list(gold)]).score) / 100.0


def exact_match(gold: list[str], pred: list[str]) -> float:
    """Share of predictions equal to the reference after stripping outer white space."""
    if not gold:
        return 0.0
    return sum(g.strip() == p.strip() for g, p in zip(gold, pred)) / len(gold)


def generation_metrics(gold: list[str], pred: list[str]) -> dict[str, float]:
    return {"chrf++": chrf_pp(gold, pred), "exact_match": exact_match(gold, pred)}


def task_metrics(task_type: str, gold: list[str], pred: list[str]) -> dict[str, float]:
    """The metrics of a task type; MAIN_METRIC in p2m_engine.types names the main one."""
    if task_type == "classification":
        return classification_metrics(gold, pred)
    if task_type == "extractive-qa":
        return squad_metrics(list(gold), pred)
    return generation_metrics(gold, pred)
