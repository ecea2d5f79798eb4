"""Failure analysis of a scored split: per-label recall and precision, confused label pairs, error examples,
and the weak labels that targeted generation should work on."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from p2m_engine.errors import DatasetError
from p2m_engine.runs import read_jsonl


@dataclass(frozen=True)
class LabelStats:
    """How the student does on one label of the split."""

    label: str
    support: int
    """Examples whose gold label is this one."""
    predicted: int
    """Examples the student gave this label."""
    correct: int
    recall: float | None
    """correct / support; None when the split has no example of the label."""
    precision: float | None
    """correct / predicted; None when the student never predicted the label."""


@dataclass(frozen=True)
class Confusion:
    """`count` examples of label `gold` were predicted as `predicted`."""

    gold: str
    predicted: str
    count: int


@dataclass(frozen=True)
class ErrorExample:
    """One misclassified input, with the student's confidence in its wrong answer."""

    input: str
    gold: str
    predicted: str
    probability: float


@dataclass(frozen=True)
class FailureReport:
    """What the student gets wrong on one split (read from its saved predictions)."""

    split: str
    n: int
    accuracy: float
    labels: tuple[LabelStats, ...]
    confusions: tuple[Confusion, ...]
    """Confused (gold, predicted) pairs, most frequent first."""
    weak_labels: tuple[str, ...]
    """Labels whose recall is below the mean recall or below the threshold, weakest first."""
    errors: tuple[ErrorExample, ...] = ()
    """A few of the most confident errors per weak label: inputs of the label that were missed, and inputs
    of other labels that were wrongly given it."""
    threshold: float | None = None
    source: str = field(default="", compare=False)
    """The predictions file the report was read from."""

    def stats(self, label: str) -> LabelStats | None:
        return next((s for s in self.labels if s.label == label), None)

    def missed(self, label: str) -> list[ErrorExample]:
        """Error examples whose gold label is `label` (the student said something else)."""
        return [e for e in self.errors if e.gold == label]

    def mistaken_for(self, label: str) -> list[ErrorExample]:
        """Error examples of other labels that the student wrongly labelled `label`."""
        return [e for e in self.errors if e.predicted == label]

    def confused_with(self, label: str) -> list[str]:
        """The labels the student predicts instead of `label`, most frequent first."""
        return [c.predicted for c in self.confusions if c.gold == label]

    def summary(self) -> str:
        """One short paragraph for the planner and the trace."""
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.2f}"

        weak = ", ".join(f"{s.label} (recall {pct(s.recall)}, precision {pct(s.precision)}, n={s.support})"
                         for s in (self.stats(w) for w in self.weak_labels) if s) or "none"
        pairs = ", ".join(f"{c.gold}->{c.predicted} x{c.count}" for c in self.confusions[:4]) or "none"
        return f"{self.split}: accuracy {self.accuracy:.3f} on {self.n}; weak labels: {weak}; confusions (gold->predicted): {pairs}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FailureReport":
        return cls(d["split"], int(d["n"]), float(d["accuracy"]), tuple(LabelStats(**s) for s in d["labels"]),
                   tuple(Confusion(**c) for c in d["confusions"]), tuple(d["weak_labels"]),
                   tuple(ErrorExample(**e) for e in d.get("errors", ())), d.get("threshold"), d.get("source", ""))


def write_failures(report: FailureReport, path: Path) -> Path:
    """Save a failure analysis (the evaluation makes it once; targeted generation reads it)."""
    path.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def read_failures(path: Path) -> FailureReport:
    """A failure analysis saved by `write_failures`.

    Raises:
        DatasetError: the file is missing or not a failure analysis.
    """
    try:
        return FailureReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path} is not a failure analysis ({e}); evaluate the model again.") from None


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def analyze_failures(predictions_path: Path, labels: Sequence[str], *, split: str | None = None,
                     threshold: float | None = None, examples_per_label: int = 3) -> FailureReport:
    """Analyse the saved predictions of one split (rows with input, gold, prediction, probability).

    Args:
        predictions_path: a predictions JSONL file as written by `evaluate.evaluate_classifier`.
        labels: the task's label set (labels without examples in the split are listed with no recall).
        split: the split's name (default: the file's stem).
        threshold: a label whose recall is below it is weak even when it is above the mean.
        examples_per_label: how many missed and how many wrongly-given examples to keep per weak label.

    Returns:
        The report; `weak_labels` is empty when every label is at or above both the mean and the threshold.

    Raises:
        DatasetError: the file is missing or has no usable prediction rows.
    """
    rows = [r for r in read_jsonl(predictions_path) if isinstance(r.get("gold"), str) and isinstance(r.get("prediction"), str)]
    if not rows:
        raise DatasetError(f"{predictions_path} has no prediction rows (gold, prediction); evaluate the model first.")
    names = list(dict.fromkeys([*labels, *(r["gold"] for r in rows), *(r["prediction"] for r in rows)]))
    support = Counter(r["gold"] for r in rows)
    predicted = Counter(r["prediction"] for r in rows)
    correct = Counter(r["gold"] for r in rows if r["gold"] == r["prediction"])
    stats = tuple(LabelStats(x, support[x], predicted[x], correct[x], _ratio(correct[x], support[x]),
                             _ratio(correct[x], predicted[x])) for x in names)
    pairs = Counter((r["gold"], r["prediction"]) for r in rows if r["gold"] != r["prediction"])
    confusions = tuple(Confusion(g, p, c) for (g, p), c in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))
    scored = [s for s in stats if s.recall is not None]
    mean = sum(s.recall for s in scored) / len(scored)  # type: ignore[misc]
    weak = sorted((s for s in scored if s.recall < mean or (threshold is not None and s.recall < threshold)),  # type: ignore[operator]
                  key=lambda s: (s.recall, s.label))
    wrong = sorted((r for r in rows if r["gold"] != r["prediction"]), key=lambda r: -float(r.get("probability") or 0))
    errors: list[ErrorExample] = []
    for s in weak:
        missed = [r for r in wrong if r["gold"] == s.label][:examples_per_label]
        given = [r for r in wrong if r["prediction"] == s.label][:examples_per_label]
        for r in missed + given:
            e = ErrorExample(str(r.get("input", "")), r["gold"], r["prediction"], float(r.get("probability") or 0))
            if e not in errors:
                errors.append(e)
    accuracy = sum(correct.values()) / len(rows)
    return FailureReport(split or predictions_path.stem, len(rows), accuracy, stats, confusions,
                         tuple(s.label for s in weak), tuple(errors), threshold, str(predictions_path))
