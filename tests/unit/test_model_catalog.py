"""Model search over a catalog of model cards: parsing, families, language, size, loadability, HyDE query."""

from __future__ import annotations

import json
from pathlib import Path

from p2m_engine.students.model_catalog import family_of, hypothetical_card, read_catalog, search_model_catalog, task_language
from p2m_engine.types import Example, TaskSpec
from tests.fakes import FakeLLM


def _card(name: str, body: str, size: int, downloads: int, header: str = "") -> str:
    return json.dumps({"pretrained_model_name": name, "description": f"---\n{header}\n---\n{body}",
                       "size_bytes": str(size), "downloads": downloads})


def _catalog(tmp_path: Path) -> Path:
    rows = [
        _card("org/tiny-bert-sentiment", "A BERT encoder fine-tuned for sentiment classification of reviews.",
              40_000_000, 900, "language:\n- en\npipeline_tag: text-classification"),
        _card("org/huge-roberta-sentiment", "A large RoBERTa encoder for sentiment classification of reviews.",
              2_000_000_000, 50_000, "language: en"),
        _card("org/t5-small-sentiment", "A T5 sequence-to-sequence model that writes the sentiment of reviews.",
              240_000_000, 5_000, "pipeline_tag: text2text-generation"),
        _card("org/gpt2-ja-code", "A GPT-2 causal language model that writes Python code from Japanese requests.",
              500_000_000, 100, "language:\n- ja"),
        _card("org/cached-bert", "A BERT encoder for review sentiment.", 60_000_000, 10, "language:\n- en"),
    ]
    path = tmp_path / "hf_models.jsonl"
    path.write_text("\n".join(rows) + "\nnot json\n", encoding="utf-8")
    return path


SENTIMENT = TaskSpec("Is this review positive or negative?", (Example("great film", "positive"),
                                                              Example("dull plot", "negative")),
                     "classification", ("positive", "negative"))


def test_read_catalog_parses_cards(tmp_path: Path) -> None:
    models = {m.name: m for m in read_catalog(_catalog(tmp_path))}
    assert len(models) == 5  # the broken line is skipped
    bert = models["org/tiny-bert-sentiment"]
    assert bert.family == "encoder" and bert.languages == ("en",) and bert.params == 10_000_000
    assert bert.pipeline_tag == "text-classification" and "sentiment classification" in bert.summary
    assert models["org/t5-small-sentiment"].family == "seq2seq" and models["org/gpt2-ja-code"].family == "causal"
    assert family_of("someone/thing", "text2text-generation") == "seq2seq"
    assert family_of("someone/thing", "", "This is an ELECTRA discriminator") == "encoder"


def test_task_language_from_script() -> None:
    assert task_language(SENTIMENT) == "en"
    ja = TaskSpec("Write code", (Example("開いているファイル'f'を閉じる", "f.close()"),), "generation")
    assert task_language(ja) == "ja"


def test_search_judges_family_size_and_loadability(tmp_path: Path) -> None:
    hits = search_model_catalog(SENTIMENT, _catalog(tmp_path), query="BERT encoder for review sentiment classification",
                          loadable={"org/cached-bert"}, max_params=150_000_000, k=5, index_dir=tmp_path / "idx")
    by_name = {h.model.name: h for h in hits}
    assert hits[0].model.name == "org/cached-bert" and hits[0].usable  # usable ones first
    assert "weights not available here" in by_name["org/tiny-bert-sentiment"].reason
    assert "over the 150M" in by_name["org/huge-roberta-sentiment"].reason
    assert "seq2seq architecture" in by_name["org/t5-small-sentiment"].reason
    assert [h.usable for h in hits].count(True) == 1
    assert hits[0].summary()["source"] == "catalog"


def test_search_respects_the_task_language(tmp_path: Path) -> None:
    ja = TaskSpec("Write the Python code", (Example("ファイルを閉じる", "f.close()"),), "generation")
    hits = search_model_catalog(ja, _catalog(tmp_path), query="causal LM for Japanese to Python code",
                          loadable={"org/gpt2-ja-code"}, max_params=10**9, k=5, index_dir=tmp_path / "idx")
    assert hits[0].model.name == "org/gpt2-ja-code" and hits[0].usable
    en_causal = [h for h in hits if h.model.name == "org/t5-small-sentiment"][0]
    assert "the task is in 'ja'" in en_causal.reason


def test_hyde_query_from_the_llm_with_fallback() -> None:
    llm = FakeLLM(lambda m, n, i: {"card": "A small BERT encoder for English review sentiment."})
    assert hypothetical_card(SENTIMENT, llm) == "A small BERT encoder for English review sentiment."
    assert "Is this review positive or negative?" in llm.requests[0]["messages"][0]["content"]
    assert hypothetical_card(SENTIMENT, None).startswith("Is this review positive or negative?")
    empty = FakeLLM(lambda m, n, i: {"card": "  "})
    assert hypothetical_card(SENTIMENT, empty).startswith("Is this review")


def test_search_models_tool_prefers_a_loadable_catalog_model(tmp_path: Path, tiny_encoder: Path) -> None:
    """The tool with a catalog folder: HyDE query from the teacher, every catalog hit listed with its verdict."""
    from types import SimpleNamespace
    from unittest import mock

    from p2m_engine.runs import Run
    from p2m_engine.types import ModelCandidate
    from tools.context import ToolContext
    from tools.models import search_models

    folder = tmp_path / "catalog"
    folder.mkdir()
    _catalog(tmp_path).rename(folder / "hf_models.jsonl")
    llm = FakeLLM(lambda m, n, i: {"card": "A small BERT encoder for English review sentiment classification."})
    ctx = ToolContext(run=Run.create(tmp_path / "runs", "t"), llm=llm, catalog_dir=folder)
    local = [ModelCandidate("packaged-minilm", str(tiny_encoder), 1000, "pypi"),
             ModelCandidate("org/cached-bert", str(tiny_encoder), 2000, "hf-cache")]
    runtime = SimpleNamespace(context=ctx, state={"task": SENTIMENT.to_dict()})
    with mock.patch("tools.models.models.search_models", return_value=local):
        _, art = search_models.func(runtime)  # type: ignore[attr-defined]
    assert art["base_model_name"] == "org/cached-bert"  # the catalog's usable hit beats the smaller default
    listed = {c["name"]: c for c in art["candidates"]}
    assert listed["org/tiny-bert-sentiment"]["usable"] is False and "not available here" in listed["org/tiny-bert-sentiment"]["reason"]
    assert llm.requests and llm.requests[0]["name"] == "write_model_card"
