"""Evaluate one iteration's student on every split it never trained on, and choose the split the build decides on.

The rule of which split decides lives here, beside the measurement, so that the evaluate tool only adapts: the
real dev split when there is one; else the held-back validation rows when there are enough; else the
demonstrations. Never the test split: the test score is reported, not tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2m_engine import students
from p2m_engine.data.synth import normalize
from p2m_engine.eval.analysis import FailureReport, analyze_failures, write_failures
from p2m_engine.types import MAIN_METRIC, Example, TaskSpec

# Fewer held-back rows than this are too few to decide on; the demonstrations are used then.
MIN_VAL_DECISION = 10


def held_out(rows: list[Example], demos: tuple[Example, ...] | list[Example]) -> list[Example]:
    """The rows of a real held-out split whose input is not a demonstration's (normalized as for leak checks).

    A user's demonstrations are often copied from the very data they test on (every shared task's prompt takes its
    demos from its dev split). The student trains on the demos, so a score that counts them is not held out.
    """
    seen = {normalize(e.input) for e in demos}
    return [e for e in rows if normalize(e.input) not in seen]


def decision_split(splits: dict[str, Any]) -> str:
    """The split the build decides on: the real dev split when there is one; else the held-back validation rows
    (synthetic when nothing was retrieved; fixed across iterations, so their scores compare) when there are
    enough; else the demonstrations. A handful of demonstrations cannot confirm a target.
    """
    if "dev" in splits:
        return "dev"
    return "val" if len(splits.get("val", ())) >= MIN_VAL_DECISION else "demos"


@dataclass(frozen=True)
class IterationEvaluation:
    """The scores of one trained student on each split, which split decides, and its failures there."""

    metrics: dict[str, Any]
    """Per split: n, the task type's metrics, per-label recall, the predictions file."""
    metric: str
    """The task type's main metric (accuracy, exact_match, chrf++)."""
    score: float
    """The main metric on `score_split` (reported, never decided on)."""
    score_split: str
    """"test" when there is test data, else "demos"."""
    decision_score: float
    decision_split: str
    decision_n: int
    predictions_dir: Path
    failures: FailureReport | None = None
    """Weak labels and confusions on the decision split (classification)."""
    failures_path: Path | None = None


def evaluate_iteration(spec: TaskSpec, model_dir: Path, splits: dict[str, list[Example]], folder: Path,
                       threshold: float) -> IterationEvaluation:
    """Score `model_dir` on each split (predictions written to `folder/<split>.jsonl`), choose the decision split,
    and for a task with labels analyse the failures there (written beside `folder`, as failures.json).

    Args:
        splits: name -> rows: "demos" always; "dev", "val" and "test" when the run has them.
        threshold: a label whose recall on the decision split is below it counts as weak.
    """
    reports = {name: students.evaluate_student(spec.task_type, model_dir, rows, name, folder / f"{name}.jsonl")
               for name, rows in splits.items()}
    main = "test" if "test" in reports else "demos"
    metric = MAIN_METRIC[spec.task_type]
    decide_on = decision_split(splits)
    failures = saved = None
    if spec.labels:
        failures = analyze_failures(folder / f"{decide_on}.jsonl", spec.labels, split=decide_on, threshold=threshold)
        saved = write_failures(failures, folder.parent / "failures.json")
    return IterationEvaluation({name: r.to_dict() for name, r in reports.items()}, metric,
                               round(reports[main].metrics[metric], 4), main,
                               round(reports[decide_on].metrics[metric], 4), decide_on, reports[decide_on].n, folder,
                               failures, saved)
