"""Cloze questions made from hub text, for an extractive-QA student to learn spans from beside the task's own rows.

No teacher is needed: a passage near the demos' contexts is taken from the hub, a short span of one of its sentences
(a year, a number, a capitalised name) becomes the answer, and the sentence without it, led by a question word and
lightly scrambled, becomes the question (the rule-based "noisy cloze" of Lewis et al. 2019, "Unsupervised Question
Answering by Cloze Translation", arXiv 1906.04980: 56.4 F1 on SQuAD with no SQuAD data at all for their best
variant, which learns the cloze-to-question translation; this is the simpler rule-based form). The scrambling
keeps the student from answering by copying the sentence word for word.
Measured here (squad, its own data hidden, packaged MiniLM, 180 steps on 1,042 cloze rows and the 2 demos): EM 15.8
/ F1 22.6 on squad's dev split, against 3.5 / 7.5 for the committed build on 20 generated pairs (teacher: 34.0 EM).

Only inputs made of fields qualify, with one field the hub text fills (the demos' longest, the context) and one
field the question goes in, in English-like script: the question words are English.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m_engine.data import pool
from p2m_engine.data.hub_pairs import Shape, ascii_share
from p2m_engine.types import Example, TaskSpec

# A passage must hold at least two sentences of this many characters in all: with one there is nothing to choose
# between, so nothing to learn. Passages may be shorter than the demos' contexts (the span is what is learnt).
MIN_PASSAGE_CHARS = 200
MIN_SENTENCES = 2
# Answers longer than this are clauses, not the short spans extractive QA asks for.
MAX_ANSWER_WORDS = 6
MIN_SENTENCE_WORDS = 6

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_YEAR = re.compile(r"(?<![#&\w])(1[0-9]\d\d|20\d\d)\b")
_NUMBER = re.compile(r"(?<![#&\w])\d[\d,.]*(?:\s?(?:%|percent|million|billion|thousand|hundred))?")
_NAME = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of|the|de|and|for)?\s*[A-Z][\w'-]*)*")
# Capitalised words that start sentences or stand for a name already said: never an answer on their own.
_FUNCTION_WORDS = frozenset("The A An In On At For As If When After Before It He She They We I You This That These "
                            "Those But And Or So Then There Here His Her Their Our My".split())


@dataclass(frozen=True)
class ClozeConfig:
    """How many cloze questions are made and how."""

    count: int = field(default=1500, metadata={"help": "cloze questions made from hub text (0: none)"})
    drop: float = field(default=0.15, metadata={"help": "share of the sentence's words left out of the question"})
    shuffle: float = field(default=3.0, metadata={"help": "how far (in words) a question word may move"})
    seed: int = field(default=0, metadata={"help": "seed of the choices of sentence, answer and noise"})


@dataclass(frozen=True)
class ClozeResult:
    """The cloze rows and where their passages came from."""

    rows: list[Example]
    sources: dict[str, int]
    """Rows per hub dataset."""
    why: str = ""
    """Why there are none, when there are none."""

    def to_dict(self) -> dict[str, Any]:
        return {"count": len(self.rows), "sources": self.sources, **({"why": self.why} if self.why else {})}


def answers(sentence: str) -> list[tuple[str, str, int]]:
    """Candidate answers of a sentence: (span, question word, start). Years ask "When", other numbers "How many",
    capitalised names "What"; a name inside a year or number span is not taken twice. Never an answer: a lone
    capitalised word that starts the sentence, a contraction ("Don't"), a field marker ("Person1:")."""
    out: list[tuple[str, str, int]] = []
    taken: list[tuple[int, int]] = []
    for rx, wh in ((_YEAR, "When"), (_NUMBER, "How many"), (_NAME, "What")):
        for m in rx.finditer(sentence):
            span = m.group(0).rstrip(" ,.")
            start, end = m.start(), m.start() + len(span)
            if (not span or span in _FUNCTION_WORDS or len(span.split()) > MAX_ANSWER_WORDS or "'" in span
                    or sentence[end:end + 1] == ":" or (m.start() == 0 and " " not in span)
                    or any(s < end and start < e for s, e in taken)):
                continue
            taken.append((start, end))
            out.append((span, wh, start))
    return out


def question(sentence: str, answer: str, wh: str, start: int, rng: random.Random, config: ClozeConfig) -> str:
    """The sentence without its answer, led by the question word, with `config.drop` of its words left out and the
    rest moved by up to `config.shuffle` places (noisy cloze)."""
    rest = (sentence[:start] + " " + sentence[start + len(answer):]).strip(" .!?;:,")
    words = rest.split()
    kept = [w for w in words if rng.random() >= config.drop] or words
    order = sorted(range(len(kept)), key=lambda i: i + rng.uniform(0, config.shuffle))
    text = " ".join(kept[i] for i in order)
    return f"{wh} {text[:1].lower()}{text[1:]}?"


def qualifies(spec: TaskSpec) -> tuple[Shape | None, str]:
    """The demos' input shape when cloze questions fit the task, or None and why not."""
    if spec.task_type != "extractive-qa":
        return None, "not an extractive-QA task"
    demos = [e.input for e in spec.examples]
    shape = Shape.of(demos)
    if shape.template is None or len(shape.written) != 1:
        return None, "the inputs are not one question field and one context field"
    asked = [(shape.template.split(d) or {}).get(shape.written[0], "") for d in demos]
    if not all(pool.is_question(q) for q in asked):
        return None, f"the demos' {shape.written[0]!r} field is not always a question"
    if min(ascii_share(d) for d in demos) < 0.8:
        return None, "the demos are not in a Latin script (the question words are English)"
    return shape, ""


def cloze_pairs(spec: TaskSpec, hub_dirs: list[Path], config: ClozeConfig, *,
                exclude: set[str] | None = None) -> ClozeResult:
    """Cloze question/answer rows in the demos' input shape, from hub passages nearest to the demos' contexts.

    Args:
        spec: an extractive-QA task whose inputs are a question field and a context field.
        hub_dirs: folders of dataset folders to take passages from.
        config: how many rows, how noisy.
        exclude: normalized texts never to take (test and dev inputs).

    Returns:
        The rows (each answer appears once in its passage) and their sources; none, with the reason, when the
        task does not qualify or the hub has no passage.
    """
    shape, why = qualifies(spec)
    if shape is None or config.count <= 0:
        return ClozeResult([], {}, why or "turned off")
    assert shape.template is not None
    contexts = [shape.part(e.input) for e in spec.examples]
    texts, vecs = pool.collect(hub_dirs, contexts, seed=config.seed, exclude=exclude, min_chars=MIN_PASSAGE_CHARS)
    passages = [texts[i] for i in pool.nearest(texts, vecs, pool.embed_texts(contexts), 4 * config.count)]
    rng = random.Random(config.seed)
    rows: list[tuple[Example, str]] = []
    for piece in passages:  # the demos' contexts are never in the pool (pool.collect)
        sentences = [s for s in _SENTENCE.split(piece.text) if len(s.split()) >= MIN_SENTENCE_WORDS]
        if len(sentences) < MIN_SENTENCES:  # a table, code or a single line is not a passage
            continue
        rng.shuffle(sentences)
        for sentence in sentences[:2]:  # two questions a passage at most: more passages, more variety
            found = [a for a in answers(sentence) if piece.text.count(a[0]) == 1]
            if not found:
                continue
            answer, wh, start = rng.choice(found)
            values = {shape.real: piece.text, shape.written[0]: question(sentence, answer, wh, start, rng, config),
                      **dict(shape.fixed)}
            rows.append((Example(shape.template.assemble(values), answer), piece.source.split("/")[0]))
        if len(rows) >= config.count:
            break
    rows = rows[: config.count]
    sources: dict[str, int] = {}
    for _, name in rows:
        sources[name] = sources.get(name, 0) + 1
    return ClozeResult([e for e, _ in rows], sources, "" if rows else "no hub passage held a usable answer")
