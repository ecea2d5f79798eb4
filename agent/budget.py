"""Parse `--budget key=value,...` into a build's limits (what it may spend) and targets (what it makes and aims for)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from p2m_engine.errors import P2MError

# The score a build aims for when the user sets no target, per main metric of the task type (all in 0..1).
DEFAULT_TARGETS = {"accuracy": 0.9, "exact_match": 0.8, "chrf++": 0.6}
# Keys whose values stay fractional; the others are counts.
_FLOATS = ("epochs", "target", "usd")
# The range of every value: (lowest, highest, whether the lowest itself is allowed). Above these a build is a
# mistake (1e9 examples per label), and 0 epochs or steps would run nothing while looking like a build.
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "steps": (1, 200, True), "per_label": (0, 10_000, True), "epochs": (0, 100, False),
    "retrieved": (0, 1_000_000, True), "labelled": (0, 100_000, True), "written": (0, 10_000, True),
    "target": (0, 1, False), "iterations": (1, 50, True),
    "llm_calls": (0, 1_000_000, True), "usd": (0, 10_000, True), "teacher_check": (0, 10_000, True),
    "teacher_steps": (0, 10_000, True),
}
# Above these an estimate needs the user's yes (refused under --yes) unless `llm_calls=` / `usd=` set the bound.
ASK_ABOVE_CALLS = 5_000
ASK_ABOVE_USD = 5.0


@dataclass(frozen=True)
class Limits:
    """What a build may spend: it stops when one of these is reached."""

    steps: int = 12
    """At most this many tool steps."""
    iterations: int = 3
    """At most this many train-and-evaluate iterations."""
    llm_calls: int | None = None
    """At most this many teacher LLM calls for generation (None: no limit besides the steps)."""
    usd: float | None = None
    """At most this many US dollars of API calls (checked before each LLM action; local models cost 0)."""
    teacher_check: int = 50
    """Real held-out rows the teacher answers at the end of a generation or QA build, to check that the student
    matches it (0: no check; classification students are far above a few-shot teacher and skip it)."""


@dataclass(frozen=True)
class Targets:
    """What a build makes and aims for: how much data, how long training, which score."""

    per_label: int = 40
    """Examples per label (classification) or pairs in all (other task types), real rows counted first."""
    epochs: float = 3.0
    """Training epochs of the first iteration (a retraining may take more)."""
    retrieved: int = 1000
    """At most this many rows taken from hub datasets."""
    labelled: int = 200
    """Hub texts labelled by the judges when no dataset fits (label_texts; 0: none)."""
    written: int = 60
    """Inputs the teacher writes like the demonstrations for the judges to label beside hub text (label_texts,
    classification without the user's --unlabelled file; at most `labelled`; 0: none)."""
    target: float | None = None
    """Stop iterating once the validation score reaches this (None: the metric's default, 0.9 accuracy)."""
    teacher_steps: int | None = None
    """Optimizer steps of a second generation student fine-tuned (LoRA) from the teacher's own weights, kept when
    it scores higher on validation (0: none; None: 40 with a GPU, 0 on a CPU, where a step of the 0.5B teacher
    takes about 40 s on 2 cores)."""

    def target_for(self, metric: str = "accuracy") -> float:
        """The target score for `metric`: the user's, else the metric's default."""
        return self.target if self.target is not None else DEFAULT_TARGETS[metric]


_HALVES = {**{f.name: "limits" for f in fields(Limits)}, **{f.name: "targets" for f in fields(Targets)}}


@dataclass(frozen=True)
class Budget:
    """One build's `--budget`: its limits (what it may spend) and its targets (what it makes and aims for), written
    as one flag and recorded flat in config.json."""

    limits: Limits = Limits()
    targets: Targets = Targets()

    def to_dict(self) -> dict[str, Any]:
        """The flat key=value record of config.json and results.json (the keys of `--budget`)."""
        return {**asdict(self.limits), **asdict(self.targets)}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "Budget":
        """A budget from its flat record, ignoring keys this version does not know."""
        return cls().replace(**{k: v for k, v in (values or {}).items() if k in _HALVES})

    def replace(self, **changes: Any) -> "Budget":
        """A copy with some keys changed, each in its half."""
        half: dict[str, dict[str, Any]] = {"limits": {}, "targets": {}}
        for key, value in changes.items():
            half[_HALVES[key]][key] = value
        return Budget(dataclasses.replace(self.limits, **half["limits"]),
                      dataclasses.replace(self.targets, **half["targets"]))

    @classmethod
    def parse(cls, text: str | None) -> "Budget":
        """Parse e.g. 'steps=8,per_label=20,epochs=1,target=0.95,iterations=4'.

        Raises:
            P2MError: unknown key, a value that is not a number, or one outside its range (BOUNDS).
        """
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in _HALVES:
                raise P2MError(f"Invalid --budget item {part!r}: use key=value with keys {', '.join(_HALVES)}.")
            try:
                value = float(raw)
            except ValueError:
                raise P2MError(f"Invalid --budget value {part!r}: {raw!r} is not a number.") from None
            low, high, low_ok = BOUNDS[key]
            if not math.isfinite(value) or value < 0:
                raise P2MError(f"Invalid --budget value {part!r}: must be positive and finite.")
            if value < low or (value == low and not low_ok) or value > high:
                lowest = f"at least {low:g}" if low_ok else f"more than {low:g}"
                raise P2MError(f"Invalid --budget value {part!r}: {key} must be {lowest} and at most {high:g}"
                               + (" (a score between 0 and 1, e.g. 0.9 accuracy)." if key == "target" else "."))
            if key not in _FLOATS and value != int(value):
                raise P2MError(f"Invalid --budget value {part!r}: {key} is a whole number.")
            values[key] = value
        return cls().replace(**{k: (v if k in _FLOATS else int(v)) for k, v in values.items()})
