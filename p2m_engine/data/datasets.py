"""The dataset hub: read local dataset folders, search them by meaning (chromadb), fit one to a task."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2m_engine.students.embeddings import embed
from p2m_engine.errors import DatasetError
from p2m_engine.names import name_problem
from p2m_engine.runs import p2m_home, read_jsonl_lines
from p2m_engine.types import DatasetCandidate, Example, TaskSpec, canonical_task_type

logger = logging.getLogger(__name__)

# Below this cosine similarity a dataset is not about the task, whatever its labels.
MIN_SCORE = 0.35


@dataclass(frozen=True)
class HubDataset:
    """A dataset folder: dataset_info.json plus JSONL splits with `input`/`output` fields."""

    name: str
    path: Path
    info: dict[str, Any]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(str(x) for x in self.info.get("labels") or ())

    def document(self) -> str:
        """The text that represents this dataset in the search index."""
        parts = [self.info.get("title", self.name), self.info.get("instruction", ""), self.info.get("description", "")]
        if self.labels:
            parts.append("Labels: " + ", ".join(self.labels))
        return "\n".join(p for p in parts if p)

    def split_path(self, split: str) -> Path | None:
        return split_path(self.path, split)

    def training_split(self, avoid: Path | None = None) -> Path | None:
        return training_split(self.path, avoid)


def split_path(folder: Path, split: str) -> Path | None:
    """The JSONL file of a split in a dataset folder, if it exists."""
    p = folder / f"{split}.jsonl"
    return p if p.is_file() else None


# The splits a dataset is trained on, in order of preference: a dataset published with a dev or validation split
# only (an evaluation set) still holds real rows of its task. The task's own test rows are never trained on
# (the leakage guard of the search_datasets tool removes them, whatever the split).
TRAINING_SPLITS = ("train", "dev", "validation")


def training_split(folder: Path, avoid: Path | None = None) -> Path | None:
    """The split of a dataset folder to train on: `train`, else `dev`, else `validation`, never the file `avoid`
    (the task's test file, when it is one of the hub's splits). None: no such split."""
    banned = avoid.resolve() if avoid is not None else None
    return next((p for p in (split_path(folder, s) for s in TRAINING_SPLITS) if p and p.resolve() != banned), None)


def train_file(candidate: DatasetCandidate) -> Path | None:
    """The file a candidate trains on (chosen when it was judged)."""
    return Path(candidate.train_file) if candidate.train_file else training_split(Path(candidate.path))


def held_out_split(folder: Path, train: Path | None) -> Path | None:
    """A split of the folder to test on that is not the one trained on (`train`): `dev`, `validation` or `test`."""
    trained = train.resolve() if train is not None else None
    return next((p for p in (split_path(folder, s) for s in ("dev", "validation", "test")) if p and p.resolve() != trained),
                None)


def scan_hub(hub_dirs: list[Path]) -> list[HubDataset]:
    """List every dataset folder under the hub folders (a folder with a dataset_info.json).

    Raises:
        DatasetError: a hub folder does not exist.
    """
    found: list[HubDataset] = []
    for hub in hub_dirs:
        if not hub.is_dir():
            raise DatasetError(f"The hub folder {hub} does not exist.")
        for info_path in sorted(hub.glob("*/dataset_info.json")):
            problem = name_problem(info_path.parent.name)
            if problem:
                logger.warning("skipping the dataset folder %r in %s: its name %s", info_path.parent.name, hub, problem)
                continue
            try:
                info = json.loads(info_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                logger.warning("skipping %s: unreadable dataset_info.json (%s)", info_path.parent, e)
                continue
            found.append(HubDataset(info_path.parent.name, info_path.parent, info))
    return found


def _fingerprint(datasets: list[HubDataset]) -> str:
    h = hashlib.sha256()
    for d in datasets:
        h.update(str(d.path.resolve()).encode())
        h.update(d.document().encode())
    return h.hexdigest()[:16]


def _collection(datasets: list[HubDataset], index_dir: Path) -> Any:
    """The chromadb collection of the hub, built once and rebuilt when the hub changes."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(index_dir), settings=Settings(anonymized_telemetry=False))
    name = f"hub-{_fingerprint(datasets)}"
    # No embedding function: chromadb's default downloads a model; we pass our own vectors.
    col = client.get_or_create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})
    if col.count() != len(datasets):
        ids = [str(d.path.resolve()) for d in datasets]
        docs = [d.document() for d in datasets]
        col.upsert(ids=ids, documents=docs, embeddings=embed(docs), metadatas=[{"name": d.name} for d in datasets])
    return col


def task_query(spec: TaskSpec) -> str:
    """The search text of a task: its instruction and a few demonstration inputs."""
    return "\n".join([spec.instruction, *[e.input[:200] for e in spec.examples[:3]]])


def nearest(col: Any, spec: TaskSpec, k: int, size: int) -> list[tuple[str, float]]:
    """The k index entries most similar to the task, as (id, cosine similarity), best first.

    Two queries are asked: the instruction with demonstration inputs, and the instruction alone; an entry
    scores the better of the two. Long demonstration inputs (news articles, passages, database schemas) fill
    the encoder's window and drown what the task is about; the instruction alone says it.
    """
    queries = [task_query(spec), spec.instruction]
    res = col.query(query_embeddings=embed(queries), n_results=min(2 * k, size))
    best: dict[str, float] = {}
    for ids, dists in zip(res["ids"], res["distances"]):
        for id_, dist in zip(ids, dists):
            best[id_] = max(best.get(id_, -1.0), 1.0 - float(dist))
    return sorted(best.items(), key=lambda x: -x[1])[:k]


def label_map(task_labels: tuple[str, ...], dataset_labels: tuple[str, ...]) -> dict[str, str] | None:
    """Map dataset label values onto task labels by name (case-insensitive); None when they do not fit.

    Every task label must be present in the dataset; dataset labels outside the task are dropped.
    """
    by_lower = {x.lower(): x for x in task_labels}
    mapping = {d: by_lower[d.lower()] for d in dataset_labels if d.lower() in by_lower}
    if set(mapping.values()) != set(task_labels):
        return None
    return mapping


def judge(spec: TaskSpec, d: HubDataset, score: float, *, source: str = "hub", avoid: Path | None = None) -> DatasetCandidate:
    """Judge one dataset's fit to the task: similarity, task type, training rows, and labels by name.

    A dataset is plausible when it is about the task (similarity at least MIN_SCORE), has the task's type
    (card names such as "text-generation" are read as p2m's "generation") and a split to train on (train, else
    dev or validation). It fits as it
    is when it is plausible and, for classification, every task label is among its labels by name; a
    plausible dataset whose labels are other strings may still fit through an LLM label mapping.
    """
    card_type = str(d.info.get("task_type") or "")
    kind = canonical_task_type(card_type) if card_type else ""
    mapping: dict[str, str] | None = None
    plausible = False
    if score < MIN_SCORE:
        reason = f"similarity {score:.2f} below {MIN_SCORE}"
    elif kind and kind != spec.task_type:
        reason = f"task type {card_type} differs from {spec.task_type}"
    elif d.training_split(avoid) is None:
        reason = "no train, dev or validation split" + (" besides the test data" if avoid and d.training_split() else "")
    elif spec.task_type != "classification":
        plausible, reason = True, f"task type {spec.task_type} fits"
    elif not d.labels:
        reason = "no label set in its card"
    else:
        plausible = True
        mapping = label_map(spec.labels, d.labels)
        reason = "labels fit by name" if mapping else f"labels {list(d.labels)} differ from {list(spec.labels)} by name"
    fits = plausible and (spec.task_type != "classification" or mapping is not None)
    training = d.training_split(avoid)
    return DatasetCandidate(d.name, str(d.path), d.info.get("description", ""), score, d.labels, card_type, mapping,
                            reason, plausible=plausible, fits=fits, source=source, train_file=str(training or ""))


def search_hub(spec: TaskSpec, hub_dirs: list[Path], k: int = 5, index_dir: Path | None = None,
                    avoid: Path | None = None) -> list[DatasetCandidate]:
    """Rank hub datasets by embedding similarity to the task, and judge each one's fit (see `judge`).

    Args:
        spec: the task.
        hub_dirs: folders of dataset folders.
        k: how many candidates to return.
        index_dir: where the chromadb index lives (default: P2M_HOME/index).
        avoid: the task's test file: never a candidate's training split.

    Returns:
        Up to k candidates, best first.
    """
    datasets = scan_hub(hub_dirs)
    if not datasets:
        return []
    col = _collection(datasets, index_dir or p2m_home() / "index")
    by_id = {str(d.path.resolve()): d for d in datasets}
    return [judge(spec, by_id[id_], score, avoid=avoid) for id_, score in nearest(col, spec, k, len(datasets))]


def load_examples(path: Path, mapping: dict[str, str] | None = None, *, limit: int | None = None,
                  skipped: list[str] | None = None) -> list[Example]:
    """Read `input`/`output` rows from a JSONL split, mapping labels and dropping rows that do not fit.

    Raises:
        DatasetError: the file is missing, or has no usable `input`/`output` rows.
    """
    out: list[Example] = []
    bad = 0
    for lineno, row in read_jsonl_lines(path, skipped=skipped):
        inp, outp = row.get("input"), row.get("output")
        if not isinstance(inp, str) or not inp.strip() or outp is None:
            bad += 1
            if skipped is not None:
                skipped.append(f"{path}:{lineno}: no text `input` and `output` fields")
            continue
        label = str(outp)
        if mapping is not None:
            if label not in mapping:
                continue
            label = mapping[label]
        out.append(Example(inp.strip(), label))
        if limit and len(out) >= limit:
            break
    if not out:
        raise DatasetError(f"{path} has no usable rows with `input` and `output` fields ({bad} rows lacked them).")
    return out
