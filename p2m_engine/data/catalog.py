"""The offline catalog of Hugging Face Hub datasets: search its descriptions, fetch the chosen one on demand.

A catalog folder holds prompt2model's `hf_dataset_index.json` ({name: {name, description,
evaluation_metadata}}) and, optionally, `hf_datasets_preprocessed.json` (list_datasets records with tags
and the gated flag). The descriptions are embedded once into their own chromadb collection in P2M_HOME
and reused. Only the dataset finally chosen is loaded (`datasets.load_dataset`, no remote code); it is
written as a local hub folder under P2M_HOME, so the rest of p2m reads it like any other hub dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m_engine.data.datasets import MIN_SCORE, nearest
from p2m_engine.students.embeddings import embed
from p2m_engine.errors import DatasetError
from p2m_engine.runs import p2m_home, write_jsonl
from p2m_engine.types import DatasetCandidate, TaskSpec, canonical_task_type

logger = logging.getLogger(__name__)

INDEX_FILE = "hf_dataset_index.json"
TAGS_FILE = "hf_datasets_preprocessed.json"
# Hub task categories that are p2m's "generation" under another name.
GENERATION_CATEGORIES = {"summarization", "translation", "text2text-generation", "text-generation",
                         "conversational", "table-to-text"}
# Rows kept per split of a fetched dataset.
MAX_FETCHED_ROWS = 20000
HELD_OUT_SPLITS = ("validation", "dev", "test")


@dataclass(frozen=True)
class CatalogEntry:
    """One Hub dataset as the catalog describes it."""

    name: str
    description: str
    task_categories: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    license: str = ""
    gated: bool = False
    evaluation: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def task_types(self) -> set[str]:
        """p2m task types this dataset may serve (from its categories and evaluation metadata)."""
        cats = [*self.task_categories, *(str(m.get("task", "")) for m in self.evaluation)]
        return {"generation" if c in GENERATION_CATEGORIES else canonical_task_type(c) for c in cats if c}

    def document(self) -> str:
        parts = [self.name, " ".join(self.description.split())[:1000]]
        if self.task_categories:
            parts.append("Tasks: " + ", ".join(self.task_categories))
        return "\n".join(parts)


def load_catalog(folder: Path) -> list[CatalogEntry]:
    """Read a catalog folder.

    Raises:
        DatasetError: the folder or its index file is missing or unreadable.
    """
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        raise DatasetError(f"The catalog folder {folder} has no {INDEX_FILE}.")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        tags_path = folder / TAGS_FILE
        records = json.loads(tags_path.read_text(encoding="utf-8")) if tags_path.is_file() else []
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"The catalog in {folder} is not readable JSON: {e}") from e
    by_id = {r["id"]: r for r in records if isinstance(r, dict) and "id" in r}
    out: list[CatalogEntry] = []
    for name, entry in sorted(index.items()):
        rec = by_id.get(name, {})
        tags = [str(t) for t in rec.get("tags") or []]

        def tagged(prefix: str) -> tuple[str, ...]:
            return tuple(t.split(":", 1)[1] for t in tags if t.startswith(prefix + ":"))

        licenses = tagged("license")
        out.append(CatalogEntry(
            name=name, description=str(entry.get("description") or rec.get("description") or ""),
            task_categories=tagged("task_categories"), languages=tagged("language"),
            license=licenses[0] if licenses else "", gated=rec.get("gated") not in (None, False),
            evaluation=tuple(m for m in entry.get("evaluation_metadata") or [] if isinstance(m, dict))))
    return out


def _collection(entries: list[CatalogEntry], folder: Path, index_dir: Path) -> Any:
    """The catalog's chromadb collection, embedded once per catalog content and reused."""
    import chromadb
    from chromadb.config import Settings

    h = hashlib.sha256()
    for name in (INDEX_FILE, TAGS_FILE):
        if (folder / name).is_file():
            h.update((folder / name).read_bytes())
    client = chromadb.PersistentClient(path=str(index_dir), settings=Settings(anonymized_telemetry=False))
    col = client.get_or_create_collection(f"catalog-{h.hexdigest()[:16]}", embedding_function=None,
                                          metadata={"hnsw:space": "cosine"})
    if col.count() != len(entries):
        # Embed only what is missing, in batches: an interrupted first build resumes where it stopped.
        have = set(col.get(include=[])["ids"])
        todo = [e for e in entries if e.name not in have]
        logger.info("embedding %d catalog descriptions (once per catalog)", len(todo))
        for i in range(0, len(todo), 256):
            part = todo[i:i + 256]
            docs = [e.document() for e in part]
            col.upsert(ids=[e.name for e in part], documents=docs, embeddings=embed(docs))
            logger.info("catalog index: %d of %d embedded", min(i + 256, len(todo)), len(todo))
    return col


def judge_entry(spec: TaskSpec, e: CatalogEntry, score: float) -> DatasetCandidate:
    """A Hub candidate's fit before loading: similarity, task type, gating. Labels are known only once loaded."""
    kinds = e.task_types()
    plausible = False
    if e.gated:
        reason = "gated on the Hub (needs an access request): refused"
    elif score < MIN_SCORE:
        reason = f"similarity {score:.2f} below {MIN_SCORE}"
    elif kinds and spec.task_type not in kinds:
        reason = f"task categories {sorted(kinds)} differ from {spec.task_type}"
    else:
        plausible, reason = True, "Hub dataset; columns and labels are checked once loaded"
    desc = e.description if not e.languages else f"{e.description} (languages: {', '.join(e.languages[:5])})"
    return DatasetCandidate(f"hf:{e.name}", f"hf:{e.name}", desc, score, (), ",".join(e.task_categories), None,
                            reason, plausible=plausible, fits=False, source="catalog")


def search_dataset_catalog(spec: TaskSpec, folder: Path, k: int = 5, index_dir: Path | None = None) -> list[DatasetCandidate]:
    """Rank the catalog's Hub datasets by embedding similarity to the task (best first, up to k)."""
    entries = load_catalog(folder)
    if not entries:
        return []
    col = _collection(entries, folder, index_dir or p2m_home() / "index")
    by_name = {e.name: e for e in entries}
    return [judge_entry(spec, by_name[i], score) for i, score in nearest(col, spec, k, len(entries))]


def entry_of(folder: Path, name: str) -> CatalogEntry:
    """The catalog entry of a Hub dataset name (with or without the "hf:" prefix)."""
    name = name.removeprefix("hf:")
    for e in load_catalog(folder):
        if e.name == name:
            return e
    raise DatasetError(f"{name} is not in the catalog {folder}.")


def _columns(entry: CatalogEntry, features: dict[str, Any]) -> tuple[list[str], str]:
    """(input columns, output column) of a loaded dataset: from its evaluation metadata, else its structure.

    Raises:
        DatasetError: the columns cannot be told apart.
    """
    for meta in entry.evaluation:
        mapping = meta.get("col_mapping") or {}
        inputs = [c for c, role in mapping.items() if role in ("text", "question", "context") and c in features]
        outputs = [c for c, role in mapping.items() if role == "target" and c in features]
        if inputs and len(outputs) == 1:
            return inputs, outputs[0]
    class_labels = [c for c, f in features.items() if type(f).__name__ == "ClassLabel"]
    strings = [c for c, f in features.items() if getattr(f, "dtype", None) == "string"]
    if len(class_labels) == 1 and strings:
        return strings, class_labels[0]
    raise DatasetError(f"cannot tell the input and output columns of {entry.name} "
                       f"(columns {sorted(features)}; no evaluation metadata, no single class-label column)")


def write_hub_folder(entry: CatalogEntry, splits: dict[str, Any], dest: Path) -> Path:
    """Write loaded Hub splits (a `datasets.DatasetDict` or a dict of `Dataset`s) as a hub dataset folder.

    Raises:
        DatasetError: no train split, or the columns cannot be told apart.
    """
    if "train" not in splits:
        raise DatasetError(f"{entry.name} has no train split (splits: {sorted(splits)})")
    train = splits["train"]
    inputs, output = _columns(entry, dict(train.features))
    feature = train.features[output]
    names = list(feature.names) if type(feature).__name__ == "ClassLabel" else None

    def rows(ds: Any) -> Any:
        for i, r in enumerate(ds):
            if i >= MAX_FETCHED_ROWS:
                break
            parts = [str(r[c]) for c in inputs if r.get(c) is not None]
            text = parts[0] if len(inputs) == 1 else "\n".join(f"{c}: {p}" for c, p in zip(inputs, parts))
            value = r[output]
            if names is not None:
                if not isinstance(value, int) or not 0 <= value < len(names):
                    continue  # unlabelled rows (-1), as in held-out splits of some datasets
                value = names[value]
            elif isinstance(value, dict) and isinstance(value.get("text"), list):
                value = value["text"][0] if value["text"] else None
            if text.strip() and value is not None:
                yield {"input": text, "output": str(value)}

    dest.mkdir(parents=True, exist_ok=True)
    write_jsonl(dest / "train.jsonl", rows(train))
    held = next((s for s in HELD_OUT_SPLITS if s in splits), None)
    if held is not None:
        write_jsonl(dest / "dev.jsonl", rows(splits[held]))
    kinds = entry.task_types()
    task_type = "classification" if names is not None else (sorted(kinds)[0] if len(kinds) == 1 else "")
    info = {"name": entry.name, "title": entry.name, "description": entry.description, "task_type": task_type,
            "labels": names, "license": entry.license, "source": f"https://huggingface.co/datasets/{entry.name}",
            "columns": {"input": inputs, "output": output}}
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
    return dest


def json_info(folder: Path) -> dict[str, Any]:
    """The dataset_info.json of a (fetched) dataset folder."""
    return json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))


def fetch(entry: CatalogEntry, cache_dir: Path | None = None) -> Path:
    """Load a Hub dataset (no remote code) and write it as a hub folder under P2M_HOME; reuse an earlier fetch.

    Raises:
        DatasetError: the dataset is gated, cannot be loaded (e.g. offline), or has no usable columns.
    """
    if entry.gated:
        raise DatasetError(f"{entry.name} is gated on the Hub: refused")
    root = cache_dir or p2m_home() / "hub_datasets"
    dest = root / re.sub(r"[^A-Za-z0-9_.-]+", "__", entry.name)
    if (dest / "dataset_info.json").is_file() and (dest / "train.jsonl").is_file():
        return dest
    import datasets

    config = next((m.get("config") for m in entry.evaluation if m.get("config") not in (None, "", "default")), None)
    try:
        loaded = datasets.load_dataset(entry.name, config, trust_remote_code=False)
    except Exception as e:  # any failure to load (offline, gone, script-based) is a reason to move on
        raise DatasetError(f"could not load {entry.name} from the Hub: {type(e).__name__}: {e}"[:400]) from e
    return write_hub_folder(entry, dict(loaded), dest)
