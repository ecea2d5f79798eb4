"""Find real datasets for a task: dense search (local hub + Hub catalog), label mapping, fetch, and a measured
fit test (classification) or an LLM rerank (other task types).

The steps, each recorded on the candidates so a trace can show why every one was taken or rejected:

1. Dense search of the local hub folders and, when given, the offline Hub catalog; one ranking by cosine.
2. Classification: every plausible candidate (about the task, same task type, training rows) is made usable
   (a Hub dataset is fetched; label names that differ from the task's get an LLM label mapping, checked
   against the demonstrations), then a probe (p2m_engine.data.probe: frozen MiniLM embeddings + logistic
   regression on its rows) is scored on the demonstrations and, when several candidates are usable, on each
   other candidate's rows (the demos count as one witness among them: three demonstrations alone are thin
   evidence). Every candidate whose probe beats chance on that evidence and comes near the best is taken (at
   most MAX_TAKEN), best first; "none" only when no probe beats chance. No vote at a temperature decides, so
   another seed takes the same data.
3. Other task types (no labels to probe): the teacher LLM reranks the plausible candidates (votes; "none"
   rejects them all), and the first usable one in rerank order is taken.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2m_engine.data import catalog, probe
from p2m_engine.data.datasets import HubDataset, judge, load_examples, search_hub, train_file
from p2m_engine.errors import DatasetError
from p2m_engine.data.labelmap import llm_label_map
from p2m_engine.llm import LLM
from p2m_engine.data.rerank import rerank_datasets
from p2m_engine.types import DatasetCandidate, TaskSpec

logger = logging.getLogger(__name__)

# At most this many datasets are taken for one classification task.
MAX_TAKEN = 3
# A dataset is taken when its probe's gain (on the demos and the other datasets' rows) is at least this share of
# the best one's.
NEAR_BEST = 0.5


@dataclass(frozen=True)
class Retrieval:
    """The outcome of a dataset search.

    `taken` point at local folders (fetched Hub datasets included), best first, each with the label map to apply.
    """

    candidates: tuple[DatasetCandidate, ...]
    taken: tuple[DatasetCandidate, ...] = ()
    rerank: dict[str, Any] | None = None
    label_mappings: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The probe score of each usable classification candidate on the demonstrations."""

    @property
    def chosen(self) -> DatasetCandidate | None:
        """The best dataset taken, if any."""
        return self.taken[0] if self.taken else None


def _with(c: DatasetCandidate, note: str, **changes: Any) -> DatasetCandidate:
    """The candidate with a decision appended to its reason."""
    return dataclasses.replace(c, reason=f"{c.reason}; {note}" if c.reason else note, **changes)


def _unique(cands: list[DatasetCandidate]) -> list[DatasetCandidate]:
    """Candidates with distinct names (a later duplicate of a hub folder's name gets its source appended)."""
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
    if c.source == "catalog":
        assert catalog_dir is not None
        try:
            folder = catalog.fetch(catalog.entry_of(catalog_dir, c.name))
        except DatasetError as e:
            return _with(c, f"rejected: {e}", plausible=False), False
        fetched = judge(spec, HubDataset(c.name, folder, catalog.json_info(folder)), c.score, source="catalog")
        c = dataclasses.replace(fetched, name=c.name, votes=c.votes, reason=f"fetched from the Hub; {fetched.reason}")
        if not c.plausible:
            return _with(c, "rejected after loading"), False
    if c.fits:
        return c, True
    if llm is None:
        return _with(c, "rejected: no LLM to map its labels"), False
    mapping, record = llm_label_map(spec, train_file(c) or Path(c.path) / "train.jsonl", llm)
    mappings.append({"dataset": c.name, **record})
    check = record["check"]
    if mapping is None:
        return _with(c, f"rejected: LLM label mapping {record['proposed']} refused ({check['reason']})"), False
    return _with(c, f"labels mapped by the LLM ({check['reason']})", label_map=mapping, fits=True), True


def find_dataset(spec: TaskSpec, hub_dirs: list[Path], *, llm: LLM | None = None, catalog_dir: Path | None = None,
                 k: int = 5, votes: int = 3, index_dir: Path | None = None, avoid: Path | None = None) -> Retrieval:
    """Search the hub (and the catalog), fit labels, and take the datasets the evidence supports.

    Args:
        spec: the task.
        hub_dirs: local folders of dataset folders.
        llm: the teacher LLM; without one there is no rerank and no label mapping by LLM.
        catalog_dir: a folder with the offline Hub catalog files, or None.
        k: candidates taken from each source.
        votes: rerank ballots (task types other than classification).
        index_dir: where the chromadb indexes live (default: P2M_HOME/index).
        avoid: the task's test file, never trained on (a hub dataset whose only split it is does not fit).

    Returns:
        Every candidate (best similarity first) with the reason it was taken or rejected, the datasets taken
        (best first), the rerank ballots (other task types), the LLM label mappings and the probe scores.
    """
    cands = search_hub(spec, hub_dirs, k=k, index_dir=index_dir, avoid=avoid) if hub_dirs else []
    if catalog_dir is not None:
        cands += catalog.search_dataset_catalog(spec, catalog_dir, k=k, index_dir=index_dir)
    cands = _unique(sorted(cands, key=lambda c: -c.score))
    plausible = [c for c in cands if c.plausible][:k]
    demos = [e for e in spec.examples if e.output in spec.labels]
    if spec.task_type == "classification" and demos:
        return _probe_and_take(spec, cands, plausible, demos, llm, catalog_dir)
    return _rerank_and_take(spec, cands, plausible, llm, catalog_dir, votes)


def _probe_and_take(spec: TaskSpec, cands: list[DatasetCandidate], plausible: list[DatasetCandidate],
                    demos: list[Any], llm: LLM | None, catalog_dir: Path | None) -> Retrieval:
    """Classification: make every plausible candidate usable, probe each on the demonstrations and on the other
    candidates' rows, take the best."""
    from p2m_engine.data.pool import embed_texts, length_bounds

    decided: dict[str, DatasetCandidate] = {}
    mappings: list[dict[str, Any]] = []
    probes: dict[str, dict[str, Any]] = {}
    scored: list[tuple[DatasetCandidate, probe.ProbeScore, list[Any]]] = []
    demo_vecs = embed_texts([e.input for e in demos])
    demo_labels = np.array([spec.labels.index(e.output) for e in demos])
    for c in plausible:
        updated, ok = _try(spec, c, llm, catalog_dir, mappings)
        if ok:
            rows = load_examples(train_file(updated) or Path(updated.path) / "train.jsonl", updated.label_map, skipped=[])
            score = probe.score_rows(rows, spec.labels, demo_vecs, demo_labels, evidence_texts=[e.input for e in demos])
            if score is None:
                updated = _with(updated, "rejected: its rows cover fewer than two of the task's labels")
            else:
                probes[c.name] = score.to_dict()
                scored.append((updated, score, rows))
        decided[c.name] = updated
    # Three demonstrations are thin evidence; the other fitting candidates' rows are hundreds. Every candidate is
    # a witness: its probe is scored on the demos and on each other candidate's rows, the demos counting as one
    # witness, and the mean decides.
    cross = probe.cross_gains({c.name: rows for c, _, rows in scored}, spec.labels) if len(scored) >= 2 else {}
    usable: list[tuple[DatasetCandidate, float]] = []
    for c, score, _ in scored:
        others = list(cross.get(c.name, {}).values())
        gain = (score.gain + sum(others)) / (1 + len(others))
        figures = f"probe on the demonstrations: accuracy {score.accuracy:.2f}, gain {score.gain:+.3f}"
        if others:
            probes[c.name].update(others=round(sum(others) / len(others), 4), gain_all=round(gain, 4))
            whose = "the other dataset's" if len(others) == 1 else f"the {len(others)} other datasets'"
            figures += f"; on {whose} rows: gain {sum(others) / len(others):+.3f}"
        if gain <= 0:
            decided[c.name] = _with(c, f"rejected: no better than chance ({figures})")
        else:
            c = _with(c, figures)
            usable.append((c, gain))
            decided[c.name] = c
    # A dataset whose inputs are not shaped like the demos' (whole reviews for a sentence task) is taken only when
    # no usable dataset is: it may agree with the others on labels, yet it teaches the student other inputs
    # (measured: sst2 and cr_polarity with their own data hidden lost 2.2 and 4.6 points when whole reviews joined).
    lo, hi = length_bounds([e.input for e in demos])
    lengths = {c.name: float(np.median([len(r.input) for r in rows])) for c, _, rows in scored}  # rows of 2+ labels
    shaped = {c.name for c, _ in usable if lo <= lengths[c.name] <= hi}
    usable.sort(key=lambda x: (x[0].name not in shaped, -x[1], -x[0].score))
    taken: list[DatasetCandidate] = []
    if usable:
        best = usable[0][1]
        for c, gain in usable:
            if shaped and c.name not in shaped:
                c = _with(c, f"not taken: its inputs are unlike the demonstrations' (median {lengths[c.name]:.0f} "
                             f"characters, the demos fit {lo}-{hi})")
            elif len(taken) < MAX_TAKEN and gain >= NEAR_BEST * best:
                c = _with(c, "taken (best probe)" if not taken else f"taken (probe within {NEAR_BEST:.0%} of the best)")
                taken.append(c)
            elif len(taken) >= MAX_TAKEN:
                c = _with(c, f"not taken: {MAX_TAKEN} better datasets were taken")
            else:
                c = _with(c, f"not taken: probe gain below {NEAR_BEST:.0%} of the best ({best:+.3f})")
            decided[c.name] = c
    final = [decided.get(c.name, c) for c in cands]
    return Retrieval(tuple(final), tuple(taken), None, tuple(mappings), probes)


def _rerank_and_take(spec: TaskSpec, cands: list[DatasetCandidate], plausible: list[DatasetCandidate],
                     llm: LLM | None, catalog_dir: Path | None, votes: int) -> Retrieval:
    """Task types without labels to probe: LLM rerank, then the first usable candidate in rerank order."""
    order = plausible
    rerank = None
    if llm is not None and len(plausible) >= 2:
        result = rerank_datasets(spec, plausible, llm, votes=votes)
        rerank = result.to_dict()
        tally = ", ".join(f"{n} {v}" for n, v in result.votes.items() if v)
        cands = [dataclasses.replace(c, votes=result.votes.get(c.name, 0)) for c in cands]
        if result.choice is None:
            final = [_with(c, f"rejected: the LLM rerank voted none ({tally})") if c.plausible else c for c in cands]
            return Retrieval(tuple(final), (), rerank)
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
    return Retrieval(tuple(final), (chosen,) if chosen else (), rerank, tuple(mappings))
