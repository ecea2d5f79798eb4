"""Costs: the price table, local servers at zero, unknown models as unknown, the estimate, and the money budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.budget import Budget
from p2m_engine.errors import P2MError
from p2m_engine.llm import LLM
from p2m_engine.llm.pricing import cost, estimate, is_local, parse_prices, price


def test_prices_local_known_and_unknown() -> None:
    assert is_local("http://127.0.0.1:8080/v1") and is_local("http://localhost:11434/v1") and not is_local(None)
    assert price("anything", "http://127.0.0.1:9/v1") == (0.0, 0.0)
    # A priced API name behind a local URL may be a proxy to the paid API: unknown, not $0 (issue 14, item 10).
    assert price("gpt-4o", "http://127.0.0.1:9/v1") is None
    assert price("gpt-4o", "http://127.0.0.1:9/v1", parse_prices("gpt-4o=1/2")) == (1.0, 2.0)
    assert "unknown cost" in estimate(2, 10, 5, 1, None, "gpt-4o-mini", "http://localhost:8000/v1").describe()
    assert price("gpt-4o-mini", None) == (0.15, 0.60)
    assert price("gpt-4o-mini-2024-07-18", None) == (0.15, 0.60)  # a dated snapshot costs what its family costs
    assert price("gpt-4o-2024-08-06", None) == (2.50, 10.00)
    assert price("my-finetune", "https://api.example.com/v1") is None
    # 1M prompt + 1M completion tokens of gpt-4o-mini: 0.15 + 0.60 dollars.
    assert cost("gpt-4o-mini", None, 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost("my-model", None, 10, 10, parse_prices("my-model=1/2")) == pytest.approx(30 / 1e6)
    with pytest.raises(P2MError, match="Invalid price"):
        parse_prices("x=cheap")


def test_llm_prices_its_usage() -> None:
    llm = LLM("https://api.example.com/v1", "gpt-4o-mini", api_key="sk-test")
    llm.usage.prompt_tokens, llm.usage.completion_tokens = 2000, 1000
    assert llm.cost_usd() == pytest.approx((2000 * 0.15 + 1000 * 0.60) / 1e6)
    assert LLM("http://127.0.0.1:1/v1", "qwen").cost_usd() == 0.0


def test_estimate_bounds_a_build() -> None:
    est = estimate(n_labels=2, per_label=40, batch_size=5, iterations=3, max_llm_calls=None, model="gpt-4o-mini",
                   base_url=None)
    # 2 labels x (3 x 8 batches + 4 retries) + 2 targeted rounds x 2 labels x 3 + 15 planner/rerank calls.
    assert est.calls == 2 * 28 + 12 + 15 and est.usd is not None and est.usd > 0
    assert "LLM calls" in est.describe() and "$" in est.describe()
    capped = estimate(2, 40, 5, 3, max_llm_calls=10, model="gpt-4o-mini", base_url=None)
    assert capped.calls == 25
    local = estimate(0, 10, 5, 1, None, "qwen", "http://127.0.0.1:5/v1")
    assert local.usd == 0.0 and local.calls == 50 * 3 + 2 * 10 + 15
    assert "unknown cost" in estimate(2, 10, 5, 1, None, "mystery", "https://x.example/v1").describe()
    # Labelling 200 hub texts adds their scores, the calibration inputs and the teacher's test on 3 demos.
    scored = estimate(2, 40, 5, 3, None, "gpt-4o-mini", None, labelled=200, n_demos=3)
    assert scored.calls == est.calls + 200 + 3 + 12
    # Writing 60 inputs first: 8 a call, at most 4 times the 8 calls needed.
    wrote = estimate(2, 40, 5, 3, None, "gpt-4o-mini", None, labelled=200, n_demos=3, written=60)
    assert wrote.calls == scored.calls + 4 * 8


def test_money_budget_is_checked_before_an_llm_action(tmp_path: Path) -> None:
    from agent.context import Context
    from agent.policy import llm_calls_left
    from p2m_engine.runs import Run

    assert Budget.parse("usd=0.5").limits.usd == 0.5
    llm = LLM("https://api.example.com/v1", "gpt-4o-mini", api_key="sk-test")
    ctx = Context(run=Run.create(tmp_path, "t"), llm=llm, max_usd=0.01)
    assert llm_calls_left(ctx)
    llm.usage.prompt_tokens = 100_000  # $0.015 spent
    assert not llm_calls_left(ctx)
    unknown = Context(run=Run.create(tmp_path, "u"), llm=LLM("https://x.example/v1", "mystery", api_key="k"),
                      max_usd=1.0)
    assert not llm_calls_left(unknown)  # an unpriced model cannot be held to a money budget


def test_a_task_without_labels_counts_its_answered_hub_inputs_at_most_as_many_as_its_pairs() -> None:
    url = "http://127.0.0.1:5/v1"
    alone = estimate(0, 4, 5, 1, None, "qwen", url).calls
    # 20 pairs: up to 40 hub texts tried, each an answer and a call for its other fields, whatever `labelled` allows.
    assert estimate(0, 4, 5, 1, None, "qwen", url, labelled=200).calls == alone + 80
    assert estimate(0, 4, 5, 1, None, "qwen", url, labelled=10).calls == alone + 40
