"""Text side of extractive QA, free of torch: split an input into question and context, locate the gold answer
span, and pick the best answer span from a model's start/end logits over one or more windows of the context."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from p2m_engine.types import Example

# A field label: one to three words then a colon and white space, at the start of the input or after white
# space ("Question: ...", "context: ...", "Passage text: ..."). The lookahead finds every start, so "the book
# Context:" yields "the book Context", "book Context" and "Context"; `field_names` decides which labels count.
_LABEL = re.compile(r"(?:^|(?<=\s))(?=([A-Za-z][\w-]*(?: [\w-]+){0,2}):\s)")


@dataclass(frozen=True)
class QAItem:
    """One input split for a span model: the question (may be empty), the context the answer is copied from,
    and, when a gold answer is known and found in the context, the character where it starts."""

    question: str
    context: str
    answer: str = ""
    answer_start: int = -1


def _labels(text: str) -> list[tuple[int, int, str]]:
    """(label start, value start, label name) of every label-shaped segment of `text`, in order of start."""
    return [(m.start(), m.start() + len(m.group(1)) + 1, m.group(1)) for m in _LABEL.finditer(text)]


def _strong(text: str, start: int, name: str) -> bool:
    """A label that needs no support from other rows: one capitalised word, or a label opening a line."""
    return (" " not in name and name[0].isupper()) or start == 0 or text[start - 1] == "\n"


def field_names(inputs: Iterable[str]) -> tuple[str, ...]:
    """The labels that mark fields across a set of inputs: those found in at least half of them.

    Label-shaped text inside a paragraph ("... the Pro Bowl: Davis") is rare across rows, so requiring it in half
    the inputs keeps it out while the real field names ("Question", "Context") appear in every row.
    """
    rows = list(inputs)
    if not rows:
        return ()
    counts: Counter[str] = Counter()
    for text in rows:
        counts.update({name for _, _, name in _labels(text)})
    return tuple(sorted(n for n, c in counts.items() if c * 2 >= len(rows)))


def split_fields(text: str, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The labelled fields of `text` as (name, value) pairs, in order; [] when it has none.

    Args:
        text: one input.
        names: the labels that count as fields (from `field_names` over the data set). By default a label counts
            when it is one capitalised word or opens a line. A name counts once: a repeat stays inside a value.

    Returns:
        The fields; text before the first label is a field with the name "".
    """
    seen: set[str] = set()
    cuts: list[tuple[int, int, str]] = []
    for start, value_start, name in _labels(text):
        allowed = name in names if names is not None else _strong(text, start, name)
        if cuts and start < cuts[-1][1]:
            continue  # a shorter label inside one already taken ("Context" inside "Passage Context")
        if allowed and name not in seen:
            seen.add(name)
            cuts.append((start, value_start, name))
    if not cuts:
        return []
    fields: list[tuple[str, str]] = []
    if text[: cuts[0][0]].strip():
        fields.append(("", text[: cuts[0][0]].strip()))
    for i, (_, value_start, name) in enumerate(cuts):
        end = cuts[i + 1][0] if i + 1 < len(cuts) else len(text)
        fields.append((name, text[value_start:end].strip()))
    return fields


def split_question_context(text: str, names: Sequence[str] | None = None) -> tuple[str, str]:
    """(question, context) of an input: the longest labelled field is the context, the others the question.

    An input without labelled fields (or with a single one) is all context, with an empty question.
    With several other fields, each keeps its label ("Title: ... Question: ...").
    """
    fields = split_fields(text, names)
    if len(fields) < 2:
        return "", (fields[0][1] if fields else text.strip())
    longest = max(range(len(fields)), key=lambda i: len(fields[i][1]))
    rest = [f for i, f in enumerate(fields) if i != longest]
    question = rest[0][1] if len(rest) == 1 else " ".join(f"{n}: {v}" if n else v for n, v in rest)
    return question, fields[longest][1]


def to_items(examples: Sequence[Example], names: Sequence[str] | None = None) -> tuple[list[QAItem], int]:
    """Split labelled examples and locate each answer in its context (first occurrence).

    Returns:
        The usable items and how many examples were dropped because the answer is not in their context.
    """
    items: list[QAItem] = []
    dropped = 0
    for e in examples:
        question, context = split_question_context(e.input, names)
        answer = e.output.strip()
        start = context.find(answer) if answer else -1
        if start < 0:
            dropped += 1
            continue
        items.append(QAItem(question, context, answer, start))
    return items, dropped


@dataclass(frozen=True)
class Window:
    """A model's view of one window of a context: logits per token, and each token's character span in the
    context (None for question, special and padding tokens)."""

    start_logits: Sequence[float]
    end_logits: Sequence[float]
    offsets: Sequence[tuple[int, int] | None]


def best_answer(windows: Sequence[Window], context: str, n_best: int = 20, max_answer_tokens: int = 30) -> str:
    """The highest-scoring span over all windows (the standard SQuAD post-processing).

    For each window, the `n_best` highest start and end logits are paired; a pair counts when both tokens are in
    the context, the end is not before the start and the span has at most `max_answer_tokens` tokens. Its score
    is start logit + end logit; the winner is mapped back to context characters through the offsets.

    Returns:
        The answer text, or "" when no window has a valid span.
    """
    best: tuple[float, int, int] | None = None
    for w in windows:
        n = len(w.offsets)  # logits beyond the window's length are batch padding
        starts = sorted(range(n), key=lambda i: w.start_logits[i], reverse=True)[:n_best]
        ends = sorted(range(n), key=lambda i: w.end_logits[i], reverse=True)[:n_best]
        for s in starts:
            for e in ends:
                first, last = w.offsets[s], w.offsets[e]
                if first is None or last is None or e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = float(w.start_logits[s]) + float(w.end_logits[e])
                if best is None or score > best[0]:
                    best = (score, first[0], last[1])
    return context[best[1] : best[2]] if best else ""
