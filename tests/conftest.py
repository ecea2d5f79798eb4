"""Test isolation: no network, a private P2M_HOME per test, offline Hugging Face libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
# The shared data sits beside the repo (/work/shared next to /work/main), or two levels up from a worktree.
SHARED_DATA = next((p for p in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if p.is_dir()),
                   ROOT.parent / "shared" / "data")
DEMO_HUB = ROOT / "examples" / "hub"


@pytest.fixture(autouse=True)
def p2m_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("p2m_home")
    monkeypatch.setenv("P2M_HOME", str(home))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("P2M_LLM", raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-size-8 BERT built from a config, with the packaged MiniLM tokenizer."""
    from tests.tiny import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
