"""The user's own unlabelled inputs (`--unlabelled FILE`): real text of the task's kind, without labels.

A hub rarely holds text of the task's own kind once its dataset is missing, and that, not the judges, is what
held p2m back on the unseen emotion task: with 3,600 of its own training inputs in the pool (labels removed,
given as extra hub folders), the same judges and student reached 50.1 where hub text alone gives 40.8; through
`--unlabelled`, 49.5 (`benchmarks/results/unlabelled/`).
Many users have such text (an inbox, a log of questions, a folder of reviews) and no labels for it; GAL
(arXiv 2106.06168) and ReGen (arXiv 2305.10703) measured that real in-domain text labelled by a model beats
text written by one. The texts join the pool every labelling step reads (p2m_engine.data.pool.collect). A
classification task labels a random sample of them first and hub text only for what they leave
(p2m_engine.data.pool.take); a task without labels lets them compete with hub text by nearness to the demos.
"""

from __future__ import annotations

import random
from pathlib import Path

from p2m_engine.errors import DatasetError
from p2m_engine.runs import read_jsonl

# Texts read from the file: a sample beyond this (the pool embeds every one; about 2 minutes on 2 cores).
MAX_UNLABELLED = 20_000
# Fields of a JSONL row that hold the text, in order of preference.
TEXT_FIELDS = ("input", "text")


def read_unlabelled(path: Path, *, limit: int = MAX_UNLABELLED, seed: int = 0) -> list[str]:
    """The distinct non-empty texts of `path`, in file order (a seeded sample of `limit` when there are more).

    A `.jsonl` file gives each row's `input` (else `text`) field; any other file gives one text per line.

    Raises:
        DatasetError: the file is missing, unreadable, or holds no text.
    """
    if not path.is_file():
        raise DatasetError(f"--unlabelled {path}: no such file.")
    if path.suffix == ".jsonl":
        skipped: list[str] = []
        texts = [next((r[k] for k in TEXT_FIELDS if isinstance(r.get(k), str)), "") for r in read_jsonl(path, skipped=skipped)]
    else:
        try:
            texts = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DatasetError(f"--unlabelled {path}: not UTF-8 text ({e}).") from e
    seen: set[str] = set()
    out = []
    for t in texts:
        t = t.strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    if not out:
        raise DatasetError(f"--unlabelled {path}: no texts. Give a JSONL file with an `input` (or `text`) field per "
                           f"row, or a text file with one input per line.")
    if len(out) > limit:
        keep = sorted(random.Random(seed).sample(range(len(out)), limit))
        out = [out[i] for i in keep]
    return out
