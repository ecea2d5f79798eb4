"""Secrets never reach logs, traces, errors or model cards: the one masking rule every writer uses."""

from __future__ import annotations

from typing import Iterable

MASK = "[REDACTED]"
MIN_SECRET_CHARS = 6
"""Shorter values are not masked: masking "x" or "abc" would garble ordinary text and hides nothing secret."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each secret replaced by MASK."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, MASK)
    return text
