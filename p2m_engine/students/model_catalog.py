"""Search a catalog of Hugging Face model cards for a student base (Prompt2Model's model index, offline).

Each card is embedded once (packaged MiniLM, persistent chromadb collection); a task is searched with a
hypothetical model card the teacher LLM writes for it (HyDE, as Prompt2Model did) or, without an LLM, with
the task text. Candidates are then judged on what p2m can train: the architecture family a task type needs,
the task's language, a size that trains on this machine, and whether the weights can be loaded here (the
local Hugging Face cache when the Hub is offline). Every rejection keeps its reason for the trace.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2m_engine.students.embeddings import embed
from p2m_engine.errors import LLMError
from p2m_engine.runs import p2m_home
from p2m_engine.types import TaskSpec
from prompts import render

logger = logging.getLogger(__name__)

CATALOG_FILE = "hf_models.jsonl"
# Families p2m's students train, per task type: encoders take a classification or span head; the generation
# student is a causal LM.
FAMILIES = {"classification": {"encoder"}, "extractive-qa": {"encoder"}, "generation": {"causal"}}
_FAMILY_WORDS = [
    ("encoder", r"bert|roberta|deberta|electra|albert|minilm|mpnet|xlm-r|e5-|bge-"),
    ("seq2seq", r"(?<![a-z])m?t5|flan|bart|marian|opus-mt|pegasus|prophetnet|(?<![a-z])led(?![a-z])|nllb|m2m"),
    ("causal", r"gpt|llama|(?<![a-z])opt-|bloom|pythia|qwen|smollm|mistral|(?<![a-z])phi-|gemma|codegen|starcoder|santacoder"),
]
_PIPELINE_FAMILY = {"text2text-generation": "seq2seq", "summarization": "seq2seq", "translation": "seq2seq",
                    "text-generation": "causal", "conversational": "causal", "fill-mask": "encoder",
                    "text-classification": "encoder", "question-answering": "encoder",
                    "token-classification": "encoder", "feature-extraction": "encoder", "sentence-similarity": "encoder"}
_MULTILINGUAL = re.compile(r"multilingual|(?<![a-z])m(t5|bart|bert)|xlm|m2m|nllb|byt5", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogModel:
    """One model card of the catalog, reduced to what ranking needs."""

    name: str
    summary: str
    params: int
    downloads: int
    family: str
    languages: tuple[str, ...]
    pipeline_tag: str

    def document(self) -> str:
        return f"{self.name}\n{self.pipeline_tag}\n{self.summary}"


@dataclass(frozen=True)
class CatalogHit:
    """A ranked catalog model and p2m's verdict on it."""

    model: CatalogModel
    score: float
    usable: bool
    reason: str

    def summary(self) -> dict[str, Any]:
        return {"name": self.model.name, "score": round(self.score, 4), "params": self.model.params,
                "family": self.model.family, "usable": self.usable, "reason": self.reason, "source": "catalog"}


def _front_matter(text: str) -> tuple[dict[str, list[str]], str]:
    """Top-level keys of a card's YAML header (scalars and `- item` lists, enough for tags) and the body."""
    m = re.match(r"---\s*\n(.*?)\n---\s*\n?", text, re.DOTALL)
    if not m:
        return {}, text
    keys: dict[str, list[str]] = {}
    current = None
    for line in m.group(1).splitlines():
        if re.match(r"^[A-Za-z_][\w-]*:", line):
            current, _, value = line.partition(":")
            value = value.strip().strip("'\"")
            keys[current] = [value] if value and not value.startswith(("[", "{", "|", ">")) else (
                [v.strip(" '\"") for v in value.strip("[]").split(",") if v.strip()] if value.startswith("[") else [])
        elif current and (item := re.match(r"^\s*-\s+(.+)$", line)):
            keys[current].append(item.group(1).strip().strip("'\""))
    return keys, text[m.end():]


def family_of(name: str, pipeline_tag: str, body: str = "") -> str:
    """The architecture family of a model from its name, else its pipeline tag, else its card text."""
    lowered = name.lower()
    for family, pattern in _FAMILY_WORDS:
        if re.search(pattern, lowered):
            return family
    if pipeline_tag in _PIPELINE_FAMILY:
        return _PIPELINE_FAMILY[pipeline_tag]
    for family, pattern in _FAMILY_WORDS:
        if re.search(pattern, body[:2000].lower()):
            return family
    return "unknown"


def read_catalog(path: Path) -> list[CatalogModel]:
    """Read a catalog of model cards: JSON lines with pretrained_model_name, description, size_bytes, downloads."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            name = str(row.get("pretrained_model_name") or "").strip()
            if not name:
                continue
            header, body = _front_matter(str(row.get("description") or ""))
            tag = (header.get("pipeline_tag") or [""])[0]
            body = re.sub(r"<!--.*?-->", " ", body, flags=re.DOTALL)
            summary = " ".join(body.split())[:400]
            try:
                size = int(row.get("size_bytes") or 0)
            except (TypeError, ValueError):
                size = 0
            out.append(CatalogModel(name, summary, size // 4, int(row.get("downloads") or 0),
                                    family_of(name, tag, body), tuple(x.lower() for x in header.get("language", [])), tag))
    return out


def task_language(spec: TaskSpec) -> str:
    """The language of the task's inputs, from their script (a rough ISO code; Latin script counts as 'en')."""
    counts: dict[str, int] = {}
    for ch in "".join(e.input for e in spec.examples):
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        lang = ("ja" if name.startswith(("HIRAGANA", "KATAKANA")) else "zh" if name.startswith("CJK") else
                "ko" if name.startswith("HANGUL") else "ru" if name.startswith("CYRILLIC") else
                "ar" if name.startswith("ARABIC") else "hi" if name.startswith("DEVANAGARI") else "en")
        counts[lang] = counts.get(lang, 0) + 1
    if counts.get("ja") and counts.get("zh"):
        counts["ja"] += counts.pop("zh")  # kanji inside Japanese text
    return max(counts, key=lambda k: counts[k]) if counts else "en"


def _collection(models: list[CatalogModel], catalog: Path, index_dir: Path) -> Any:
    """The chromadb collection of the catalog, embedded once per catalog file."""
    import chromadb
    from chromadb.config import Settings

    stat = catalog.stat()
    tag = hashlib.sha256(f"{catalog.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    client = chromadb.PersistentClient(path=str(index_dir), settings=Settings(anonymized_telemetry=False))
    col = client.get_or_create_collection(f"models-{tag}", embedding_function=None, metadata={"hnsw:space": "cosine"})
    if col.count() != len(models):
        for i in range(0, len(models), 500):
            chunk = models[i : i + 500]
            col.upsert(ids=[m.name for m in chunk], documents=[m.document() for m in chunk],
                       embeddings=embed([m.document() for m in chunk]))
    return col


def hypothetical_card(spec: TaskSpec, llm: Any) -> str:
    """A model card the teacher LLM imagines for a model that does the task (the HyDE query).

    Falls back to the task text when the LLM gives no usable answer.
    """
    fallback = "\n".join([spec.instruction, *[e.input[:200] for e in spec.examples[:3]]])
    if llm is None:
        return fallback
    messages = [{"role": "user", "content": render("model_card", instruction=spec.instruction,
                                                   examples=spec.examples[:3], task_type=spec.task_type)}]
    schema = {"type": "object", "properties": {"card": {"type": "string", "maxLength": 600}}, "required": ["card"]}
    try:
        card = str(llm.call_tool(messages, "write_model_card", schema, temperature=0.0, max_tokens=400).get("card", ""))
    except LLMError as e:
        logger.info("no hypothetical model card (%s); searching with the task text", e)
        return fallback
    return card.strip() or fallback


def search_model_catalog(spec: TaskSpec, catalog: Path, *, query: str, loadable: set[str], max_params: int,
                   k: int = 10, index_dir: Path | None = None) -> list[CatalogHit]:
    """Rank catalog models for `spec` and judge each: usable only when p2m can train and load it here.

    Args:
        spec: the task.
        catalog: a JSON-lines catalog of model cards (e.g. shared/catalog/hf_models.jsonl).
        query: the search text (a hypothetical model card, or the task text).
        loadable: model ids whose weights are available here (local cache, packaged).
        max_params: the largest model that trains on this machine.
        k: how many hits to return.
        index_dir: where the embedding index lives (default: P2M_HOME/index).
    """
    models = read_catalog(catalog)
    if not models:
        return []
    col = _collection(models, catalog, index_dir or p2m_home() / "index")
    res = col.query(query_embeddings=embed([query]), n_results=min(max(4 * k, 20), len(models)))
    by_name = {m.name: m for m in models}
    lang = task_language(spec)
    wanted = FAMILIES.get(spec.task_type, set())
    hits = []
    for name, dist in zip(res["ids"][0], res["distances"][0]):
        m = by_name[name]
        score = 1.0 - float(dist) + 0.02 * math.log10(1 + m.downloads)
        reasons = []
        if m.family not in wanted:
            reasons.append(f"{m.family} architecture; a {spec.task_type} student needs {'/'.join(sorted(wanted))}")
        if lang != "en" and lang not in m.languages and not _MULTILINGUAL.search(m.name):
            reasons.append(f"the task is in '{lang}' and the card lists {list(m.languages) or 'no language'}")
        if m.params > max_params:
            reasons.append(f"{m.params / 1e6:.0f}M params is over the {max_params / 1e6:.0f}M that train here")
        if not reasons and m.name not in loadable:
            reasons.append("weights not available here (not in the local Hugging Face cache; the Hub is offline)")
        hits.append(CatalogHit(m, score, not reasons, "; ".join(reasons) or f"fits: {m.family}, {m.params / 1e6:.0f}M"))
    hits.sort(key=lambda h: (-h.usable, -h.score))
    return hits[:k]
