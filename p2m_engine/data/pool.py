"""Unlabelled real text for a task: the inputs of every hub dataset, cut into pieces shaped like the task's
inputs, and the ones nearest to the demonstrations in embedding space.

ReGen (arXiv 2305.10703) and GAL (arXiv 2106.06168) measured that real text labelled by a model beats text
written by a model. A hub rarely holds the task's own data, but it holds text of the same kind: questions
inside QA datasets, news sentences inside NER data, reviews inside a sentiment corpus with other labels.
Those pieces are found here by meaning, never by dataset or label name.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from p2m_engine.data.datasets import scan_hub
from p2m_engine.data.input_fields import MARKER
from p2m_engine.data.unlabelled import read_unlabelled
from p2m_engine.runs import p2m_home, read_jsonl
from p2m_engine.data.synth import normalize

logger = logging.getLogger(__name__)

# Rows read from each split of each hub dataset (a sample: the pool must be built in seconds).
ROWS_PER_SPLIT = 300
# Pieces kept of each split (a long-document split gives many sentences: they are a sample, not the point).
PIECES_PER_SPLIT = 600
# A task whose form rules out most pieces (questions only) reads this many times more rows of each split, and
# keeps only pieces of its form before the cap: the unseen question-type task's pool held 1,045 questions from
# 300 rows a split; replayed with about 3,000, its student gained 1.4 points.
FORM_ROWS_FACTOR = 8
SPLITS = ("train", "dev", "validation", "test")
# Longer pieces are not embedded (the encoder reads 256 tokens; a whole article is not an input like a demo's).
MAX_PIECE_CHARS = 2000
# The source of the user's own texts in the pool, and of the inputs the teacher wrote (p2m_engine.data.written).
UNLABELLED = "unlabelled"
WRITTEN = "written"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class PoolText:
    """One piece of unlabelled text and where it came from."""

    text: str
    source: str
    """`dataset/split`."""


def pieces(text: str) -> list[str]:
    """The text itself and its parts: the values of `Field:` markers and lines, and the sentences of long prose.

    "Question: Who wrote it? Context: The book ..." gives the whole, the question and the passage; a
    passage gives its sentences too. Which pieces are kept is decided later, by length and by meaning.
    """
    text = text.strip()
    out = [text]
    parts = [p.strip() for p in MARKER.split(text)] if MARKER.search(text) else [text]
    fields = [p for p in parts if p and not MARKER.fullmatch(p)]
    for f in fields:
        out += [line.strip() for line in f.split("\n") if line.strip()]
    for f in list(out):
        if len(f) > 200:
            out += [s.strip() for s in _SENTENCE.split(f) if s.strip()]
    seen: set[str] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def length_bounds(demos: list[str]) -> tuple[int, int]:
    """The range of lengths (characters) a piece may have to pass for an input like the demonstrations."""
    lengths = [len(d) for d in demos] or [80]
    return max(3, int(min(lengths) * 0.3)), max(40, int(max(lengths) * 2.5))


def is_question(text: str) -> bool:
    """Whether a text is a question (ends with a question mark, closing quotes and brackets aside)."""
    return text.rstrip().rstrip("\"')]»”’").endswith(("?", "？"))


def same_form(demos: list[str]) -> Callable[[str], bool] | None:
    """A test of whether a piece has the demonstrations' form, as far as it is unambiguous: when every demo is a
    question, only questions are like them (a question-type task must learn from questions, not from the
    statements a topic neighbour brings). Otherwise None: every piece passes, since three demos that happen to
    be statements do not make a question unlike them."""
    if demos and all(is_question(d) for d in demos):
        return is_question
    return None


def _split_pieces(path: Path, rows_per_split: int, seed: int, form: Callable[[str], bool] | None = None) -> list[str]:
    """The distinct pieces of a sample of a split's inputs (the same sample for every task without a `form`;
    with one, only pieces of that form, from a sample `FORM_ROWS_FACTOR` times larger)."""
    if form is not None:
        rows_per_split *= FORM_ROWS_FACTOR
    texts = [t for t in (r.get("input") for r in read_jsonl(path, skipped=[])) if isinstance(t, str) and t.strip()]
    random.Random(seed).shuffle(texts)
    out: list[str] = []
    seen: set[str] = set()
    for t in texts[:rows_per_split]:
        for p in pieces(t):
            if p not in seen and len(p) <= MAX_PIECE_CHARS and (form is None or form(p)):
                seen.add(p)
                out.append(p)
    return random.Random(seed).sample(out, PIECES_PER_SPLIT) if len(out) > PIECES_PER_SPLIT else out


def _split_vectors(path: Path, texts: list[str]) -> np.ndarray:
    """Embeddings of a split's pieces, cached on disk by the file's identity and the pieces' content."""
    stat = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|".encode("utf-8"))
    h.update("\x00".join(texts).encode("utf-8"))
    cache = p2m_home() / "pool" / f"{h.hexdigest()[:24]}.npy"
    if cache.is_file():
        vecs = np.load(cache)
        if vecs.shape[0] == len(texts):
            return vecs
    vecs = embed_texts(texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, vecs)
    tmp.replace(cache)
    return vecs


def collect(hub_dirs: list[Path], demos: list[str], *, rows_per_split: int = ROWS_PER_SPLIT, seed: int = 0,
            exclude: set[str] | None = None, min_chars: int | None = None,
            unlabelled: Path | None = None, written: list[str] = ()) -> tuple[list[PoolText], np.ndarray]:
    """Pieces of every hub dataset's inputs whose length and form fit the demonstrations', without duplicates, and their
    embeddings (each split's pieces are embedded once and cached, whatever the task).

    Args:
        hub_dirs: folders of dataset folders.
        demos: the demonstrations' inputs (their lengths bound the pieces; they are never in the pool).
        rows_per_split: rows sampled from each split.
        seed: seed of the sampling.
        exclude: normalized texts that must not be in the pool (test inputs, dev inputs, demonstrations).
        min_chars: the shortest piece taken, in place of the demos' lower bound.
        unlabelled: the user's file of the task's own inputs (p2m_engine.data.unlabelled): every text of it is in
            the pool first, as a whole (it is an input, not a piece), with source `unlabelled`.
        written: inputs the teacher wrote like the demos (p2m_engine.data.written), in the pool as wholes with
            source `written`, to be taken by nearness like hub text.
    """
    lo, hi = length_bounds(demos)
    lo = lo if min_chars is None else min_chars
    like_demos = same_form(demos)
    banned = banned_texts(demos, exclude)
    out: list[PoolText] = []
    vectors: list[np.ndarray] = []
    seen: set[str] = set()
    own = read_unlabelled(unlabelled, seed=seed) if unlabelled is not None else []
    _add_wholes(out, vectors, seen, own, _split_vectors(unlabelled, own) if own else [], UNLABELLED,  # type: ignore[arg-type]
                banned)
    for d in scan_hub(hub_dirs):
        for split in SPLITS:
            path = d.path / f"{split}.jsonl"
            if not path.is_file():
                continue
            texts = _split_pieces(path, rows_per_split, seed, like_demos)
            vecs = _split_vectors(path, texts)
            for text, vec in zip(texts, vecs):
                key = normalize(text)
                if lo <= len(text) <= hi and key and key not in seen and key not in banned:
                    seen.add(key)
                    out.append(PoolText(text, f"{d.name}/{split}"))
                    vectors.append(vec)
    hub = out, (np.stack(vectors) if vectors else np.zeros((0, 384), dtype=np.float32))
    return with_written(*hub, written, banned) if written else hub


def banned_texts(demos: list[str], exclude: set[str] | None) -> set[str]:
    """Normalized texts never in the pool: the held-out inputs (`exclude`) and the demonstrations."""
    return set(exclude or ()) | {normalize(d) for d in demos}


def _add_wholes(out: list[PoolText], vectors: list[np.ndarray], seen: set[str], texts: list[str],
                vecs: Any, source: str, banned: set[str]) -> None:
    """Append whole inputs (not pieces: no length bounds but the encoder's) that are neither banned nor seen."""
    for text, vec in zip(texts, vecs):
        key = normalize(text)
        if len(text) <= MAX_PIECE_CHARS and key and key not in seen and key not in banned:
            seen.add(key)
            out.append(PoolText(text, source))
            vectors.append(vec)


def with_written(texts: list[PoolText], vecs: np.ndarray, written: list[str], banned: set[str]
                 ) -> tuple[list[PoolText], np.ndarray]:
    """A collected pool with the inputs the teacher wrote (p2m_engine.data.written) put in after the user's own
    texts and before hub text, as wholes with source `written`; a hub piece equal to one of them leaves.

    Args:
        texts, vecs: a pool from `collect`.
        written: the written inputs.
        banned: normalized texts never in the pool (held-out inputs and the demonstrations).
    """
    own = [i for i, t in enumerate(texts) if t.source == UNLABELLED]
    out = [texts[i] for i in own]
    vectors = [vecs[i] for i in own]
    seen = {normalize(t.text) for t in out}
    _add_wholes(out, vectors, seen, list(written), embed_texts(list(written)), WRITTEN, banned)
    for t, v in zip(texts, vecs):
        if t.source != UNLABELLED and normalize(t.text) not in seen:
            out.append(t)
            vectors.append(v)
    return out, (np.stack(vectors) if vectors else np.zeros((0, 384), dtype=np.float32))


def nearness(vecs: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each text's nearness to the task: its best cosine to the queries (the demos and the label queries)."""
    if not len(vecs) or not len(queries):
        return np.zeros(len(vecs))
    return (vecs @ queries.T).max(axis=1)


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit-normalised MiniLM embeddings of `texts` as a float32 array."""
    from p2m_engine.students.embeddings import embed

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(embed(texts), dtype=np.float32)


def nearest(pool: list[PoolText], vecs: np.ndarray, demo_vecs: np.ndarray, k: int) -> list[int]:
    """Indices of the `k` pool texts most like the demonstrations (best cosine to any demo), best first.

    Each demonstration gets its turn (round robin over per-demo rankings), so a task whose demos differ
    (a question about a person, one about a number) is not filled with the neighbours of one demo.
    """
    if not pool or demo_vecs.size == 0:
        return []
    sims = vecs @ demo_vecs.T  # (pool, demos)
    rankings = [list(np.argsort(-sims[:, j])) for j in range(sims.shape[1])]
    chosen: list[int] = []
    taken: set[int] = set()
    pos = [0] * len(rankings)
    while len(chosen) < min(k, len(pool)):
        progressed = False
        for j, ranking in enumerate(rankings):
            while pos[j] < len(ranking) and ranking[pos[j]] in taken:
                pos[j] += 1
            if pos[j] < len(ranking) and len(chosen) < k:
                i = int(ranking[pos[j]])
                chosen.append(i)
                taken.add(i)
                progressed = True
        if not progressed:
            break
    return chosen


def take(pool: list[PoolText], vecs: np.ndarray, queries: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """Indices of `k` pool texts: the user's own texts first, in a seeded random order, then the other texts (hub
    text, and inputs the teacher wrote) most like the queries (`nearest`: the demonstrations, and the labels none
    of them shows) for what they leave.

    The user's texts are the task's own distribution, so a random sample of them keeps its variety and its label
    prior. Their nearest to three demonstrations are texts like those three: on the unseen emotion task, 3,200 of
    its 16,000 training inputs taken that way gave 44.6, a random sample of them 49.5 (hub text alone: 40.8).
    """
    own = [i for i, t in enumerate(pool) if t.source == UNLABELLED]
    random.Random(seed).shuffle(own)
    own = own[:k]
    if len(own) >= k:
        return own
    hub = [i for i, t in enumerate(pool) if t.source != UNLABELLED]
    picked = nearest([pool[i] for i in hub], vecs[hub], queries, k - len(own))
    return own + [hub[i] for i in picked]

