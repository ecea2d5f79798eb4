"""Attributes that make generated data diverse, and the figures that show whether it is.

A small teacher asked again and again for "new examples" of a label writes the same few (the issue-12 demo:
54 of 137 candidates were exact duplicates). AttrPrompt (Yu et al. 2023, arXiv 2306.15895) conditions each
batch on a sampled attribute instead; Prompt2Model samples earlier examples into the context (synth does both).
The attribute here is a topic. A topic that is itself about another label would make the teacher write that
label's content under this one ("politics" for a sports-news label), so each label gets only the topics that
are not clearly about another label (cosine of the packaged MiniLM's embeddings).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

import numpy as np

TOPICS = ("sports", "weather", "politics", "business and finance", "science", "health and medicine", "travel",
          "food and cooking", "music", "film and television", "history", "technology", "education", "law and crime",
          "family life", "nature and animals", "cars and transport", "art and literature", "space", "the economy",
          "a small town", "a company", "a university", "shopping", "games", "the environment", "a hospital",
          "an airport", "farming", "fashion")
# A topic whose cosine to another label reaches this, by CLASH_MARGIN more than its cosine to the label itself,
# belongs to that other label. Measured MiniLM cosines: "sports"/"Sports" 1.0, "business and finance"/"Business"
# 0.74, "technology"/"Sci/Tech" 0.62; topic against emotion, question-type, spam or sentiment labels 0.24-0.48.
OTHER_LABEL_COSINE = 0.55
CLASH_MARGIN = 0.15
# The filters' reasons (p2m_engine.data.synth) that mean the teacher repeated itself or a demonstration.
COPIES = ("duplicate", "near_duplicate", "leak", "near_copy_of_demo", "near_copy_of_demo_or_test")


def topics_by_label(labels: tuple[str, ...], descriptions: Mapping[str, str] | None = None,
                    topics: tuple[str, ...] = TOPICS) -> dict[str, list[str]]:
    """For each label, the topics it may be written about: every topic except those that clearly belong to
    another label. A label left with none gets all (the conditioning then only adds variety, never a clash)."""
    from p2m_engine.data.pool import embed_texts

    described = [f"{label}: {descriptions[label]}" if descriptions and label in descriptions else label for label in labels]
    cos = embed_texts(list(topics)) @ embed_texts(described).T  # (topics, labels), unit vectors
    out: dict[str, list[str]] = {}
    for j, label in enumerate(labels):
        others = np.delete(cos, j, axis=1)
        if others.size:
            closest = others.max(axis=1)
            clash = (closest >= OTHER_LABEL_COSINE) & (closest - cos[:, j] >= CLASH_MARGIN)
        else:
            clash = np.zeros(len(topics), bool)
        out[label] = [t for t, bad in zip(topics, clash) if not bad] or list(topics)
    return out


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.lower().split()
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_ngrams(texts: Iterable[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams over all word n-grams of `texts` (0 when there are none)."""
    grams: Counter[tuple[str, ...]] = Counter(g for t in texts for g in _ngrams(t, n))
    total = sum(grams.values())
    return round(len(grams) / total, 4) if total else 0.0


def duplicate_rate(kept: int, dropped: Mapping[str, int]) -> float:
    """Share of the teacher's candidates dropped as exact or near duplicates (of each other or of a demonstration)."""
    dups = sum(v for k, v in dropped.items() if k in COPIES)
    total = kept + sum(dropped.values())
    return round(dups / total, 4) if total else 0.0
