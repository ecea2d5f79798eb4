"""Find one real dataset for a task: dense search (local hub + Hub catalog), LLM rerank, label mapping, fetch.

The steps, each recorded on the candidates so a trace can show why every one was taken or rejected:

1. Dense search of the local hub folders and, when given, the offline Hub catalog; one ranking by cosine.
2. Plausible candidates (about the task, same task type, training rows) are reranked by the teacher LLM
   when there is one and at least two are plausible (votes; "none" rejects them all).
3. In rerank order (votes, then similarity) each candidate is tried: a Hub dataset is fetched (offline this
   fails fast, and the next candidate is tried); a classification dataset whose label names differ from the
   task's gets an LLM label mapping, checked against the demonstrations. The first one that passes is taken.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m_engine import catalog
from p2m_engine.datasets import HubDataset, judge, search_datasets
from p2m_engine.errors import DatasetError
from p2m_engine.labelmap import llm_label_map
from p2m_engine.llm import LLM
from p2m_engine.rerank import rerank_datasets
from p2m_engine.types import DatasetCandidate, TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrieval:
    """The outcome of a dataset search.

    `chosen` points at a local folder (a fetched Hub dataset included) and carries the label map to apply.
    """

    candidates: tuple[DatasetCandidate, ...]
    chosen: DatasetCandidate | None = None
    rerank: dict[str, Any] | None = None
    label_mappings: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def _with(c: DatasetCandidate, note: str, **changes: Any) -> DatasetCandidate:
    """The candidate with a decision appended to its reason."""
    return dataclasses.replace(c, reason=f"{c.reason}; {note}" if c.reason else note, **changes)


def _unique(cands: list[DatasetCandidate]) -> list[DatasetCandidate]:
    """Candidates with distinct names (a later duplicate of a local name gets its source appended)."""
    seen: set[str] = set()
    out = []
    for c in cands:
        if c.name in seen:
            c = dataclasses.replace(c, name=f"{c.name} ({c.source})")
        seen.add(c.name)
        out.append(c)
    return out


def _try(spec: TaskSpec, c: DatasetCandidate, llm: LLM | None, catalog_dir: Path | None,
         mappings: list[dict[str, Any]]) -> tuple[DatasetCandidate, bool]:
    """Make a plausible candidate usable (fetch, then fit labels); returns (updated candidate, taken)."""
    if c.source == "hub":
        assert catalog_dir is not None
        try:
            folder = catalog.fetch(catalog.entry_of(catalog_dir, c.name))
        except DatasetError as e:
            return _with(c, f"rejected: {e}", plausible=False), False
        fetched = judge(spec, HubDataset(c.name, folder, catalog.json_info(folder)), c.score, source="hub")
        c = dataclasses.replace(fetched, name=c.name, votes=c.votes, reason=f"fetched from the Hub; {fetched.reason}")
        if not c.plausible:
            return _with(c, "rejected after loading"), False
    if c.fits:
        return c, True
    if llm is None:
        return _with(c, "rejected: no LLM to map its labels"), False
    mapping, record = llm_label_map(spec, Path(c.path) / "train.jsonl", llm)
    mappings.append({"dataset": c.name, **record})
    check = record["check"]
    if mapping is None:
        return _with(c, f"rejected: LLM label mapping {record['proposed']} refused ({check['reason']})"), False
    return _with(c, f"labels mapped by the LLM ({check['reason']})", label_map=mapping, fits=True), True


def find_dataset(spec: TaskSpec, hub_dirs: list[Path], *, llm: LLM | None = None, catalog_dir: Path | None = None,
                 k: int = 5, votes: int = 3, index_dir: Path | None = None) -> Retrieval:
    """Search the hub (and the catalog), rerank, fit labels, and take the first usable dataset.

    Args:
        spec: the task.
        hub_dirs: local folders of dataset folders.
        llm: the teacher LLM; without one there is no rerank and no label mapping by LLM.
        catalog_dir: a folder with the offline Hub catalog files, or None.
        k: candidates taken from each source.
        votes: rerank ballots.
        index_dir: where the chromadb indexes live (default: P2M_HOME/index).

    Returns:
        Every candidate (best similarity first) with its votes and the reason it was taken or rejected,
        the chosen one (or None), the rerank ballots and the LLM label mappings.
    """
    cands = search_datasets(spec, hub_dirs, k=k, index_dir=index_dir) if hub_dirs else []
    if catalog_dir is not None:
        cands += catalog.search_catalog(spec, catalog_dir, k=k, index_dir=index_dir)
    cands = _unique(sorted(cands, key=lambda c: -c.score))
    plausible = [c for c in cands if c.plausible][:k]
    order = plausible
    rerank = None
    if llm is not None and len(plausible) >= 2:
        result = rerank_datasets(spec, plausible, llm, votes=votes)
        rerank = result.to_dict()
        tally = ", ".join(f"{n} {v}" for n, v in result.votes.items() if v)
        cands = [dataclasses.replace(c, votes=result.votes.get(c.name, 0)) for c in cands]
        if result.choice is None:
            final = [_with(c, f"rejected: the LLM rerank voted none ({tally})") if c.plausible else c for c in cands]
            return Retrieval(tuple(final), None, rerank)
        by_name = {c.name: c for c in cands}
        order = sorted((by_name[c.name] for c in plausible), key=lambda c: (-c.votes, -c.score))
    decided: dict[str, DatasetCandidate] = {}
    chosen = None
    mappings: list[dict[str, Any]] = []
    for c in order:
        if chosen is not None:
            decided[c.name] = _with(c, f"not tried: {chosen.name} was taken")
            continue
        updated, taken = _try(spec, c, llm, catalog_dir, mappings)
        if taken:
            how = "taken (best similarity that fits)"
            if rerank:
                how = f"taken (rerank: {updated.votes} of {votes} votes"
                how += ")" if updated.name == order[0].name else ", after the better-voted candidates were rejected)"
            updated = _with(updated, how)
            chosen = updated
        decided[c.name] = updated
    final = [decided.get(c.name, c) for c in cands]
    return Retrieval(tuple(final), chosen, rerank, tuple(mappings))
