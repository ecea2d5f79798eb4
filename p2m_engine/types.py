"""Small frozen records passed between engine stages; heavy artefacts stay on disk as paths."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

TaskType = Literal["classification", "extractive-qa", "generation"]
# What the main score of each task type is (the one the benchmark and the agent's target use).
Progress = Callable[[int, int], None]
"""Called with (done, total) as long work advances (the CLI draws a bar from it)."""

MAIN_METRIC: dict[str, str] = {"classification": "accuracy", "extractive-qa": "exact_match", "generation": "chrf++"}
# Every metric p2m computes for a task type (p2m_engine.eval.metrics.task_metrics), the main one first.
METRICS: dict[str, tuple[str, ...]] = {"classification": ("accuracy", "macro_f1"), "extractive-qa": ("exact_match", "f1"),
                                      "generation": ("chrf++", "exact_match")}
# A task without labels gets this many times the per-label budget as its total target (what a 5-label task gets).
PAIRS_PER_LABEL_BUDGET = 5


def generation_total(per_label: int) -> int:
    """Pairs a build generates for a task without labels: PAIRS_PER_LABEL_BUDGET times the per-label budget
    (the policy, the tool and the cost estimate use this one rule)."""
    return per_label * PAIRS_PER_LABEL_BUDGET
# Task type names used by hub dataset cards, mapped to p2m's.
TASK_TYPE_ALIASES: dict[str, str] = {"text-generation": "generation", "text2text-generation": "generation",
                                     "question-answering": "extractive-qa", "extractive_qa": "extractive-qa",
                                     "text-classification": "classification"}


def canonical_task_type(name: str) -> str:
    """p2m's name for a task type as a dataset card or a user writes it."""
    return TASK_TYPE_ALIASES.get(name, name)


@dataclass(frozen=True)
class Example:
    """One input/output pair."""

    input: str
    output: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output}


@dataclass(frozen=True)
class TaskSpec:
    """What the user asked for: an instruction, demonstrations, a task type and (for classification) labels."""

    instruction: str
    examples: tuple[Example, ...] = ()
    task_type: TaskType = "classification"
    labels: tuple[str, ...] = ()
    label_descriptions: dict[str, str] = field(default_factory=dict)
    """What a label means, when the user said so (e.g. a label added in chat without demonstrations):
    label -> description. Every prompt that lists the labels shows it."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "instruction": self.instruction,
            "examples": [e.to_dict() for e in self.examples],
            "task_type": self.task_type,
            "labels": list(self.labels),
        }
        # Only when there are some: a task without descriptions keeps the JSON (and the hashes of cached
        # steps keyed on it) of the versions before this field.
        if self.label_descriptions:
            d["label_descriptions"] = dict(self.label_descriptions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskSpec":
        return cls(
            instruction=d["instruction"],
            examples=tuple(Example(**e) for e in d.get("examples", [])),
            task_type=d.get("task_type", "classification"),
            labels=tuple(d.get("labels", [])),
            label_descriptions={str(k): str(v) for k, v in (d.get("label_descriptions") or {}).items()},
        )


@dataclass(frozen=True)
class DatasetCandidate:
    """A dataset found by search, with its fit to the task."""

    name: str
    path: str
    description: str
    score: float
    labels: tuple[str, ...] = ()
    task_type: str = ""
    label_map: dict[str, str] | None = None
    reason: str = ""
    plausible: bool = False
    """About the task (similar enough, same task type, has training rows), whatever its label names."""
    fits: bool = False
    """Usable as it is: plausible, and for classification its labels map onto the task's."""
    source: str = "hub"
    """Where it lives: "hub" (a dataset folder of --hub) or "catalog" (the Hugging Face catalog of --catalog,
    downloaded on demand)."""
    votes: int = 0
    """Votes the LLM rerank gave it."""
    train_file: str = ""
    """The split it trains on: `train`, else `dev` or `validation`, never the task's test file ("" when none)."""

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["description"] = self.description[:160]
        d["score"] = round(self.score, 4)
        return d


@dataclass(frozen=True)
class ModelCandidate:
    """A base model a student can be fine-tuned from."""

    name: str
    path: str
    params: int
    source: str
    score: float = 0.0
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DataResult:
    """Where a stage wrote examples and how many survived its filters."""

    path: Path
    count: int
    per_label: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    llm_calls: int = 0
    tokens: int = 0
    stopped_labels: tuple[str, ...] = ()
    """Labels whose generation stopped because batch after batch gave nothing new."""
    stop_reason: str | None = None
    """Why generation stopped short of its target (None: it reached it)."""


@dataclass(frozen=True)
class TrainResult:
    """A trained student on disk with its training figures."""

    model_dir: Path
    train_loss: float
    val_score: float
    n_train: int
    n_val: int
    epochs: float
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalReport:
    """Scores of a student on one labelled split."""

    split: str
    n: int
    metrics: dict[str, float]
    per_label_recall: dict[str, float] = field(default_factory=dict)
    predictions_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["predictions_path"] = str(self.predictions_path) if self.predictions_path else None
        return d
