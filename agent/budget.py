"""Parse `--budget key=value,...` into the build's limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

from p2m_engine.errors import P2MError

# The score a build aims for when the user sets no target, per main metric of the task type (all in 0..1).
DEFAULT_TARGETS = {"accuracy": 0.9, "exact_match": 0.8, "chrf++": 0.6}
# Keys whose values stay fractional; the others are counts.
_FLOATS = ("epochs", "target", "usd")


@dataclass(frozen=True)
class Budget:
    """The limits of one build."""

    steps: int = 12
    per_label: int = 40
    epochs: float = 3.0
    retrieved: int = 1000
    labelled: int = 200
    """Hub texts labelled by the judges when no dataset fits (label_texts; 0: none)."""
    target: float | None = None
    """Stop iterating once the validation score reaches this (None: the metric's default, 0.9 accuracy)."""
    iterations: int = 3
    """At most this many train-and-evaluate iterations."""
    llm_calls: int | None = None
    usd: float | None = None
    """At most this many US dollars of API calls (checked before each LLM action; local models cost 0)."""
    """At most this many teacher LLM calls for generation (None: no limit besides the steps)."""

    def target_for(self, metric: str = "accuracy") -> float:
        """The target score for `metric`: the user's, else the metric's default."""
        return self.target if self.target is not None else DEFAULT_TARGETS[metric]

    @classmethod
    def parse(cls, text: str | None) -> "Budget":
        """Parse e.g. 'steps=8,per_label=20,epochs=1,target=0.95,iterations=4'.

        Raises:
            P2MError: unknown key or a value that is not a non-negative number.
        """
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in cls.__dataclass_fields__:
                raise P2MError(f"Invalid --budget item {part!r}: use key=value with keys {', '.join(cls.__dataclass_fields__)}.")
            try:
                value = float(raw)
            except ValueError:
                raise P2MError(f"Invalid --budget value {part!r}: {raw!r} is not a number.") from None
            if not math.isfinite(value) or value < 0 or (key in ("steps", "iterations") and value < 1):
                raise P2MError(f"Invalid --budget value {part!r}: must be positive and finite.")
            if key == "target" and not 0 < value <= 1:
                raise P2MError(f"Invalid --budget value {part!r}: the target is a score between 0 and 1 (e.g. 0.9 accuracy).")
            values[key] = value
        return cls(**{k: (v if k in _FLOATS else int(v)) for k, v in values.items()})  # type: ignore[arg-type]
