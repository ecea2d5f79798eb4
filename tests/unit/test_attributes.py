"""Attribute sampling for generation: topics that do not clash with other labels, and the diversity figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2m_engine.data import attributes
from p2m_engine.data.synth import SynthConfig, generate_labelled_examples
from p2m_engine.types import Example, TaskSpec
from tests.fakes import FakeLLM


def test_a_topic_that_belongs_to_another_label_is_not_used_for_this_one() -> None:
    allowed = attributes.topics_by_label(("Sports", "Business"))
    assert "sports" in allowed["Sports"] and "sports" not in allowed["Business"]
    assert "business and finance" in allowed["Business"] and "business and finance" not in allowed["Sports"]
    # Topics unrelated to either label stay open to both.
    assert "weather" in allowed["Sports"] and "weather" in allowed["Business"]


def test_labels_unrelated_to_topics_keep_nearly_all_of_them() -> None:
    allowed = attributes.topics_by_label(("positive", "negative"))
    assert all(len(v) >= len(attributes.TOPICS) - 3 for v in allowed.values())


def test_distinct_ngrams_and_duplicate_rate() -> None:
    assert attributes.distinct_ngrams(["a b c", "a b c"]) == 0.5  # 2 unique bigrams of 4
    assert attributes.distinct_ngrams(["a b c", "d e f"]) == 1.0
    assert attributes.distinct_ngrams(["one"]) == 0.0
    assert attributes.duplicate_rate(6, {"duplicate": 2, "near_duplicate": 1, "leak": 1, "too_long": 10}) == 0.2
    assert attributes.duplicate_rate(0, {}) == 0.0


SPEC = TaskSpec("Classify the news article's section.", (Example("Team wins the cup final", "Sports"),
                                                         Example("Shares fall after profit warning", "Business")),
                "classification", ("Sports", "Business"))


def _llm() -> FakeLLM:
    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        return {f"input_{k + 1}": f"article number {i} part {k} with its own words {i * 10 + k}" for k in range(2)}

    return FakeLLM(answer)


@pytest.mark.parametrize("on", [True, False])
def test_each_batch_is_written_about_a_sampled_topic_of_its_label(tmp_path: Path, on: bool) -> None:
    llm = _llm()
    out = tmp_path / "g.jsonl"
    generate_labelled_examples(SPEC, llm, out, SynthConfig(per_label=8, batch_size=2, attributes=on))  # type: ignore[arg-type]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    if not on:
        assert all("Write them about" not in p for p in prompts) and all("topic" not in r for r in rows)
        return
    allowed = attributes.topics_by_label(SPEC.labels)
    for r in rows:
        assert r["topic"] in allowed[r["output"]]
    assert all(f"Write them about {r['topic']}," in p for r, p in zip(rows[::2], prompts))
    assert len({r["topic"] for r in rows}) >= 3  # sampled, not one topic for all
    assert not any(r["output"] == "Business" and r["topic"] == "sports" for r in rows)


def test_the_planners_topics_replace_the_built_in_list_and_still_keep_to_their_label(tmp_path: Path) -> None:
    llm = _llm()
    out = tmp_path / "g.jsonl"
    chosen = ("football matches", "quarterly earnings", "garden birds")
    generate_labelled_examples(SPEC, llm, out, SynthConfig(per_label=8, batch_size=2, attributes=False),  # type: ignore[arg-type]
                               topics=chosen)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    # Given topics apply even with the built-in sampling switched off; each prompt names its batch's topic.
    assert rows and {r["topic"] for r in rows} <= set(chosen) and len({r["topic"] for r in rows}) >= 2
    assert all(f"Write them about {r['topic']}," in p for r, p in zip(rows[::2], prompts))
    # A topic that clearly belongs to the other label is not used for this one.
    assert attributes.topics_by_label(SPEC.labels, topics=chosen)["Business"] == ["quarterly earnings", "garden birds"]
    assert not any(r["output"] == "Business" and r["topic"] == "football matches" for r in rows)
