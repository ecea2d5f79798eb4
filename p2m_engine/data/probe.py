"""A cheap, measurable fit test for labelled data: a linear probe on frozen sentence embeddings.

The rows of a candidate dataset (or any labelled rows) train a logistic regression on packaged-MiniLM
embeddings in about a second; the probe is then scored on labelled evidence of the task (the demonstrations,
and rows the teacher labelled). A dataset whose rows teach the task's labels scores well above chance there; a
dataset about something else does not. Deterministic: the same rows and evidence give the same score, so the
same build with another seed picks the same data (an LLM vote at temperature 0.7 did not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from p2m_engine.types import Example

if TYPE_CHECKING:
    from p2m_engine.data.input_fields import FieldTemplate

# Rows of a candidate used to fit its probe (label-balanced).
PROBE_ROWS = 400
# L2 strength of the probe (sklearn's C): small data, strong prior.
PROBE_C = 1.0


@dataclass(frozen=True)
class ProbeScore:
    """How well a probe trained on some rows predicts the evidence."""

    accuracy: float
    gain: float
    """Mean log-probability of the evidence's labels above chance (log K + mean log p): > 0 beats guessing."""
    n_train: int
    n_evidence: int

    def to_dict(self) -> dict[str, float | int]:
        return {"accuracy": round(self.accuracy, 4), "gain": round(self.gain, 4),
                "n_train": self.n_train, "n_evidence": self.n_evidence}


def fit(vectors: np.ndarray, labels: np.ndarray, n_classes: int, *, c: float = PROBE_C,
        weights: np.ndarray | None = None) -> "object":
    """A multinomial logistic regression over `n_classes` (classes absent from `labels` get no probability)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    clf.fit(vectors, labels, sample_weight=weights)
    return clf


def probabilities(clf: object, vectors: np.ndarray, n_classes: int) -> np.ndarray:
    """(rows, n_classes) probabilities of a fitted probe; classes it never saw get 0."""
    out = np.zeros((len(vectors), n_classes))
    if len(vectors):
        out[:, clf.classes_] = clf.predict_proba(vectors)  # type: ignore[attr-defined]
    return out


def balanced(rows: list[Example], cap: int) -> list[Example]:
    """At most `cap` rows, taken round-robin over labels so that no label is crowded out (first rows first)."""
    by_label: dict[str, list[Example]] = {}
    for r in rows:
        by_label.setdefault(r.output, []).append(r)
    queues = [list(q) for q in by_label.values()]
    out: list[Example] = []
    i = 0
    while len(out) < cap and any(queues):
        q = queues[i % len(queues)]
        if q:
            out.append(q.pop(0))
        i += 1
    return out


def pair_features(texts: list[str], template: "FieldTemplate") -> np.ndarray:
    """Features of two-field inputs for a linear probe: a*b, |a-b| and the cosine of the two fields' embeddings
    (one embedding of the whole pair says what it is about, not whether its halves agree)."""
    from p2m_engine.data.pool import embed_texts
    from p2m_engine.students.probe_student import features

    return features(embed_texts, texts, template)


def score_rows(rows: list[Example], labels: tuple[str, ...], evidence_vecs: np.ndarray, evidence_labels: np.ndarray,
               *, evidence_weights: np.ndarray | None = None, cap: int = PROBE_ROWS,
               evidence_texts: list[str] | None = None) -> ProbeScore | None:
    """Train a probe on `rows` and score it on the evidence; None when the rows cover fewer than two labels.

    Args:
        rows: labelled rows with task labels as outputs.
        labels: the task's labels (the class order).
        evidence_vecs: embeddings of the evidence texts.
        evidence_labels: their label indices.
        evidence_weights: a weight per evidence row (demonstrations count more than teacher-labelled rows).
        cap: rows used to fit the probe.
        evidence_texts: the evidence's texts; with them, rows of two marked fields (paraphrase, entailment) that
            the evidence shares are probed on pair features (`pair_features`) instead of one embedding.
    """
    from p2m_engine.students.pair_input import pair_template
    from p2m_engine.data.pool import embed_texts

    rows = balanced([r for r in rows if r.output in labels], cap)
    if len({r.output for r in rows}) < 2 or len(evidence_labels) == 0:
        return None
    template = pair_template([r.input for r in rows]) if evidence_texts else None
    if template is not None and evidence_texts and all(template.split(x) for x in evidence_texts):
        vecs = pair_features([r.input for r in rows], template)
        evidence_vecs = pair_features(evidence_texts, template)
    else:
        vecs = embed_texts([r.input for r in rows])
    y = np.array([labels.index(r.output) for r in rows])
    clf = fit(vecs, y, len(labels))
    probs = probabilities(clf, evidence_vecs, len(labels))
    w = np.ones(len(evidence_labels)) if evidence_weights is None else evidence_weights
    picked = probs[np.arange(len(evidence_labels)), evidence_labels]
    acc = float(np.average(probs.argmax(1) == evidence_labels, weights=w))
    ll = float(np.average(np.log(np.maximum(picked, 1e-6)), weights=w)) + math.log(len(labels))
    return ProbeScore(acc, ll, len(rows), len(evidence_labels))


def cross_gains(row_sets: dict[str, list[Example]], labels: tuple[str, ...], *,
                cap: int = PROBE_ROWS) -> dict[str, dict[str, float]]:
    """The gain of each row set's probe on every other set's rows: `out[a][b]` is how well rows `a` predict the
    labels of rows `b` (mean log-probability above chance). Datasets that teach the same labels predict each
    other; one whose labels mean something else (or the reverse) predicts the others badly and is predicted badly.

    Args:
        row_sets: labelled rows (task labels as outputs) per candidate; sets with fewer than two labels are left out.
        labels: the task's labels (the class order).
        cap: rows of each set used, label-balanced, to fit its probe and as evidence for the others.
    """
    from p2m_engine.students.pair_input import pair_template
    from p2m_engine.data.pool import embed_texts

    sets = {name: balanced([r for r in rows if r.output in labels], cap) for name, rows in row_sets.items()}
    sets = {name: rows for name, rows in sets.items() if len({r.output for r in rows}) >= 2}
    inputs = [r.input for rows in sets.values() for r in rows]
    template = pair_template(inputs) if inputs else None
    if template is not None and not all(template.split(x) for x in inputs):
        template = None
    vecs = {name: pair_features([r.input for r in rows], template) if template else embed_texts([r.input for r in rows])
            for name, rows in sets.items()}
    ys = {name: np.array([labels.index(r.output) for r in rows]) for name, rows in sets.items()}
    out: dict[str, dict[str, float]] = {}
    for a in sets:
        clf = fit(vecs[a], ys[a], len(labels))
        out[a] = {}
        for b in sets:
            if b != a:
                picked = probabilities(clf, vecs[b], len(labels))[np.arange(len(ys[b])), ys[b]]
                out[a][b] = float(np.mean(np.log(np.maximum(picked, 1e-6)))) + math.log(len(labels))
    return out
