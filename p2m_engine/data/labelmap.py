"""Map a dataset's label values onto the task's labels with the LLM, and check the mapping against the demos.

Used when a dataset is about the task but names its labels differently (0/1, "pos"/"neg", ...). The LLM
proposes a task label (or "drop") for each dataset label; the proposal is then checked with embeddings:
each demonstration should lie closer to the rows the mapping sends to the demo's own label than to the rows
it sends to any other label. A mapping that sends demo-like rows to the wrong label is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2m_engine.students.embeddings import embed
from p2m_engine.errors import LLMError
from p2m_engine.llm import LLM
from p2m_engine.runs import read_jsonl
from p2m_engine.types import TaskSpec
from prompts import render

logger = logging.getLogger(__name__)

DROP = "drop"
# Most dataset labels the LLM is asked to map in one call.
MAX_DATASET_LABELS = 20
# Rows per dataset label shown to the LLM, and embedded for the check.
ROWS_SHOWN = 3
ROWS_CHECKED = 24
# Sample rows shown to the LLM in all (split over the labels) and their length.
PROMPT_ROW_BUDGET = 18
SHOWN_ROW_CHARS = 160
MAX_ROW_CHARS = 200


@dataclass(frozen=True)
class LabelCheck:
    """How well a mapping agrees with the demonstrations.

    `margin` is the mean over demos of (similarity to the centroid of the rows mapped to the demo's label)
    minus (the best similarity to another label's centroid); negative means the demos sit with rows the
    mapping gives to other labels.
    """

    accepted: bool
    reason: str
    agreement: float | None = None
    margin: float | None = None
    per_demo: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reason": self.reason, "agreement": self.agreement,
                "margin": self.margin, "per_demo": list(self.per_demo)}


def rows_by_label(train: Path, per_label: int = ROWS_CHECKED, max_labels: int = MAX_DATASET_LABELS + 1) -> dict[str, list[str]]:
    """Up to `per_label` inputs of each label value in a JSONL split (labels in order of first appearance)."""
    out: dict[str, list[str]] = {}
    for row in read_jsonl(train, skipped=[]):
        inp, label = row.get("input"), row.get("output")
        if not isinstance(inp, str) or not inp.strip() or label is None:
            continue
        key = str(label)
        if key not in out and len(out) >= max_labels:
            continue
        bucket = out.setdefault(key, [])
        if len(bucket) < per_label:
            bucket.append(inp.strip()[:MAX_ROW_CHARS])
    return out


def propose_label_map(spec: TaskSpec, rows: dict[str, list[str]], llm: LLM) -> dict[str, str]:
    """Ask the LLM which task label (or "drop") each dataset label stands for.

    Raises:
        LLMError: the LLM gave no usable answer.
    """
    # Keep the prompt within a small model's context: fewer sample rows when there are many labels.
    shown = max(1, min(ROWS_SHOWN, PROMPT_ROW_BUDGET // max(1, len(rows))))
    dataset_labels = [{"label": label, "rows": [x[:SHOWN_ROW_CHARS] for x in r[:shown]]} for label, r in rows.items()]
    messages = [{"role": "user", "content": render("map_labels", instruction=spec.instruction, examples=spec.examples,
                                                     labels=spec.labels, descriptions=spec.label_descriptions,
                                                     dataset_labels=dataset_labels)}]
    choice = {"type": "string", "enum": [*spec.labels, DROP]}
    schema = {"type": "object", "properties": {label: choice for label in rows}, "required": list(rows)}
    answer = llm.call_tool(messages, "map_labels", schema, temperature=0.0, max_tokens=24 + 16 * len(rows))
    return {label: str(answer.get(label, DROP)) for label in rows}


def check_label_map(spec: TaskSpec, mapping: dict[str, str], rows: dict[str, list[str]]) -> LabelCheck:
    """Check a dataset-label -> task-label mapping against the demonstrations (see the module docstring).

    Refused when a task label gets no rows, when an answer is not a task label, or when the demos'
    mean margin is negative. Accepted unchecked when there are no labelled demonstrations.
    """
    bad = sorted({v for v in mapping.values() if v != DROP and v not in spec.labels})
    if bad:
        return LabelCheck(False, f"the mapping names labels outside the task: {bad}")
    by_task: dict[str, list[str]] = {t: [] for t in spec.labels}
    for d_label, t_label in mapping.items():
        if t_label != DROP:
            by_task[t_label].extend(rows.get(d_label, []))
    empty = [t for t, r in by_task.items() if not r]
    if empty:
        return LabelCheck(False, f"task labels {empty} get no dataset rows under this mapping")
    demos = [e for e in spec.examples if e.output in by_task]
    if not demos:
        return LabelCheck(True, "accepted unchecked: no labelled demonstrations to check against")
    labels = list(by_task)
    texts = [e.input for e in demos] + [t for lab in labels for t in by_task[lab]]
    vecs = np.asarray(embed(texts), dtype=np.float32)
    demo_vecs, row_vecs = vecs[: len(demos)], vecs[len(demos):]
    centroids, start = [], 0
    for lab in labels:
        n = len(by_task[lab])
        c = row_vecs[start:start + n].mean(axis=0)
        centroids.append(c / (np.linalg.norm(c) or 1.0))
        start += n
    sims = demo_vecs @ np.stack(centroids).T
    per_demo, margins, hits = [], [], 0
    for i, e in enumerate(demos):
        own = labels.index(e.output)
        others = [sims[i, j] for j in range(len(labels)) if j != own]
        margin = float(sims[i, own] - max(others)) if others else 0.0
        nearest = labels[int(np.argmax(sims[i]))]
        hits += nearest == e.output
        margins.append(margin)
        per_demo.append({"input": e.input[:80], "label": e.output, "nearest": nearest, "margin": round(margin, 4)})
    agreement, mean_margin = hits / len(demos), float(np.mean(margins))
    figures = f"{hits}/{len(demos)} demos nearest to their own label, mean margin {mean_margin:+.3f}"
    if mean_margin < 0:
        return LabelCheck(False, f"refused: contradicts the demonstrations ({figures})", agreement,
                          round(mean_margin, 4), tuple(per_demo))
    return LabelCheck(True, f"consistent with the demonstrations ({figures})", agreement, round(mean_margin, 4),
                      tuple(per_demo))


def llm_label_map(spec: TaskSpec, train: Path, llm: LLM) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """Propose a label mapping for a dataset split with the LLM and check it.

    Returns:
        (the mapping without dropped labels, or None when refused; a record of the proposal and check).
    """
    rows = rows_by_label(train)
    if len(rows) > MAX_DATASET_LABELS:
        return None, {"proposed": None, "check": {"accepted": False,
                                                  "reason": f"more than {MAX_DATASET_LABELS} dataset labels"}}
    try:
        proposed = propose_label_map(spec, rows, llm)
    except LLMError as e:
        return None, {"proposed": None, "check": {"accepted": False, "reason": f"the LLM gave no mapping: {e}"[:300]}}
    check = check_label_map(spec, proposed, rows)
    record = {"proposed": proposed, "check": check.to_dict()}
    if not check.accepted:
        return None, record
    return {d: t for d, t in proposed.items() if t != DROP}, record
