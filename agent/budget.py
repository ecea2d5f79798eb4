"""Parse `--budget key=value,...` into the build's limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

from p2m_engine.errors import P2MError


@dataclass(frozen=True)
class Budget:
    """The limits of one build."""

    steps: int = 12
    per_label: int = 40
    epochs: float = 3.0
    retrieved: int = 1000

    @classmethod
    def parse(cls, text: str | None) -> "Budget":
        """Parse e.g. 'steps=8,per_label=20,epochs=1'.

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
            if not math.isfinite(value) or value < 0 or (key == "steps" and value < 1):
                raise P2MError(f"Invalid --budget value {part!r}: must be positive and finite.")
            values[key] = value
        return cls(**{k: (v if k == "epochs" else int(v)) for k, v in values.items()})  # type: ignore[arg-type]
