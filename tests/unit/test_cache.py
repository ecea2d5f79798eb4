"""The SQLite response cache and its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p2m_engine.llm.cache import ResponseCache, cache_key

MODEL = "m-1"
PARAMS = {"temperature": 0.0, "max_tokens": 512, "tool": "t", "variant": 0}
MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]


@pytest.fixture
def cache(tmp_path: Path):
    c = ResponseCache(tmp_path / "c.sqlite")
    yield c
    c.close()


def test_put_get_round_trip(cache: ResponseCache) -> None:
    value = {"inputs": ["a", "é ✓"], "n": 3, "nested": {"x": [1.5, None, True]}}
    cache.put("k1", MODEL, value)
    assert cache.get("k1") == value


def test_round_trip_non_dict_values(cache: ResponseCache) -> None:
    cache.put("list", MODEL, [1, "two"])
    cache.put("str", MODEL, "plain")
    assert cache.get("list") == [1, "two"]
    assert cache.get("str") == "plain"


def test_missing_key_returns_none(cache: ResponseCache) -> None:
    assert cache.get("absent") is None
    cache.put("present", MODEL, {"a": 1})
    assert cache.get("absent") is None


def test_len_counts_distinct_keys_and_put_replaces(cache: ResponseCache) -> None:
    assert len(cache) == 0
    cache.put("a", MODEL, {"v": 1})
    cache.put("b", MODEL, {"v": 2})
    assert len(cache) == 2
    cache.put("a", MODEL, {"v": 3})
    assert len(cache) == 2
    assert cache.get("a") == {"v": 3}
    assert cache.get("b") == {"v": 2}


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "c.sqlite"  # parents are created
    first = ResponseCache(path)
    first.put("k", MODEL, {"inputs": ["kept"]})
    first.close()
    assert path.exists()

    second = ResponseCache(path)
    try:
        assert len(second) == 1
        assert second.get("k") == {"inputs": ["kept"]}
    finally:
        second.close()


URL = "http://127.0.0.1:8080/v1"


def test_cache_key_is_stable_hex_digest() -> None:
    k = cache_key(MODEL, PARAMS, MESSAGES, URL)
    assert re.fullmatch(r"[0-9a-f]{64}", k)
    assert cache_key(MODEL, dict(PARAMS), [dict(m) for m in MESSAGES], URL) == k
    # Dict order does not matter, list order does.
    assert cache_key(MODEL, dict(reversed(list(PARAMS.items()))), MESSAGES, URL) == k
    assert cache_key(MODEL, PARAMS, list(reversed(MESSAGES)), URL) != k


@pytest.mark.parametrize(
    "model,params,messages",
    [
        ("m-2", PARAMS, MESSAGES),
        (MODEL, {**PARAMS, "temperature": 0.7}, MESSAGES),
        (MODEL, {**PARAMS, "variant": 1}, MESSAGES),
        (MODEL, {**PARAMS, "extra": None}, MESSAGES),
        (MODEL, PARAMS, MESSAGES[:1]),
        (MODEL, PARAMS, [MESSAGES[0], {"role": "user", "content": "hello!"}]),
        (MODEL, PARAMS, [MESSAGES[0], {"role": "assistant", "content": "hello"}]),
    ],
    ids=["model", "temperature", "variant", "extra-param", "fewer-messages", "content", "role"],
)
def test_cache_key_changes_with_any_input(model: str, params: dict, messages: list) -> None:
    assert cache_key(model, params, messages, URL) != cache_key(MODEL, PARAMS, MESSAGES, URL)


def test_cache_key_changes_with_the_endpoint() -> None:
    assert cache_key(MODEL, PARAMS, MESSAGES, "http://10.0.0.2:8000/v1") != cache_key(MODEL, PARAMS, MESSAGES, URL)


def test_answers_of_one_server_are_not_served_for_another(tmp_path: Path) -> None:
    """Two servers, one model name, the same prompt: each build gets its own server's answer (issue 14, item 11)."""
    from p2m_engine.llm import LLM
    from tests.openai_stub import OpenAIStub

    cache = ResponseCache(tmp_path / "c.sqlite")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    answers = []
    for text in ("from server A", "from server B"):
        with OpenAIStub([("tool", {"answer": text})], model="same-name") as stub:
            llm = LLM(stub.base_url, "same-name", cache=cache)
            answers.append(llm.call_tool(MESSAGES, "reply", schema)["answer"])
    assert answers == ["from server A", "from server B"]
    # The same server asked again answers from the cache (nothing is paid twice).
    again = LLM("http://127.0.0.1:9/v1", "same-name", cache=cache, endpoint=llm.cache_endpoint())
    assert again.call_tool(MESSAGES, "reply", schema)["answer"] == "from server B" and again.usage.cached == 1
    cache.close()
