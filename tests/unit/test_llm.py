"""LLM client against a real local HTTP server speaking the OpenAI chat-completions API."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from p2m_engine.llm.cache import ResponseCache
from p2m_engine.errors import LLMError
from p2m_engine.llm import LLM, rightmost_json_object
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.timeout(30)

NAME = "propose_inputs"
SCHEMA = {
    "type": "object",
    "properties": {"inputs": {"type": "array", "items": {"type": "string", "maxLength": 50}}},
    "required": ["inputs"],
}
MESSAGES = [
    {"role": "system", "content": "You write test inputs."},
    {"role": "user", "content": "Give two short inputs."},
]


def make_llm(stub: OpenAIStub, **kw) -> LLM:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 0)
    return LLM(base_url=stub.base_url, model="stub-model", api_key="test", **kw)


def free_closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------- call_tool


def test_call_tool_returns_arguments_and_sends_forced_tool_choice() -> None:
    with OpenAIStub([("tool", {"inputs": ["x", "y"]})], prompt_tokens=13, completion_tokens=5) as stub:
        llm = make_llm(stub)
        out = llm.call_tool(MESSAGES, NAME, SCHEMA, temperature=0.7, max_tokens=77)

        assert out == {"inputs": ["x", "y"]}
        bodies = stub.chat_requests
        assert len(bodies) == 1
        body = bodies[0]
        assert body["model"] == "stub-model"
        assert body["messages"] == MESSAGES
        assert body["tool_choice"] == {"type": "function", "function": {"name": NAME}}
        assert body["temperature"] == 0.7
        assert body["max_tokens"] == 77
        assert [t["function"]["name"] for t in body["tools"]] == [NAME]
        assert body["tools"][0]["type"] == "function"
        assert body["tools"][0]["function"]["parameters"] == SCHEMA
        assert stub.requests[0]["headers"]["authorization"] == "Bearer test"

    assert llm.usage.calls == 1
    assert llm.usage.cached == 0
    assert llm.usage.failed == 0
    assert llm.usage.prompt_tokens == 13
    assert llm.usage.completion_tokens == 5
    assert llm.usage.tokens == 18


def test_usage_tokens_accumulate_over_calls() -> None:
    with OpenAIStub([("tool", {"inputs": ["a"]}), ("tool", {"inputs": ["b"]})],
                    prompt_tokens=10, completion_tokens=3) as stub:
        llm = make_llm(stub)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA)["inputs"] == ["a"]
        assert llm.call_tool(MESSAGES, NAME, SCHEMA, variant=1)["inputs"] == ["b"]
    assert llm.usage.to_dict() == {"calls": 2, "cached": 0, "failed": 0, "prompt_tokens": 20, "completion_tokens": 6}


def test_repair_parses_json_from_content_without_tool_call() -> None:
    with OpenAIStub([("content", 'Sure! {"inputs": ["a"]} hope it helps')]) as stub:
        llm = make_llm(stub)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"inputs": ["a"]}
        assert len(stub.chat_requests) == 1
    assert llm.usage.calls == 1


def test_repair_extracts_object_from_chatty_arguments_string() -> None:
    with OpenAIStub([("raw_args", 'Here you go: {"inputs": ["z"]}')]) as stub:
        llm = make_llm(stub)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"inputs": ["z"]}
        assert len(stub.chat_requests) == 1


def test_unparseable_answer_is_retried_then_valid_answer_returned() -> None:
    with OpenAIStub([("raw_args", "{not json"), ("tool", {"inputs": ["ok"]})]) as stub:
        llm = make_llm(stub)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=3) == {"inputs": ["ok"]}
        assert len(stub.chat_requests) == 2
        assert stub.remaining == 0
    assert llm.usage.calls == 2


@pytest.mark.parametrize("attempts", [1, 3])
def test_unparseable_answers_raise_after_exactly_attempts_requests(attempts: int) -> None:
    # A valid answer waits after the broken ones: a client that asked once more would succeed.
    script = [("raw_args", "{not json")] * attempts + [("tool", {"inputs": ["too late"]})]
    with OpenAIStub(script) as stub:
        llm = make_llm(stub)
        with pytest.raises(LLMError, match="no valid answer") as info:
            llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=attempts)
        assert NAME in str(info.value)
        assert len(stub.chat_requests) == attempts
        assert stub.remaining == 1
    assert llm.usage.calls == attempts
    assert llm.usage.failed == 0


def test_content_without_json_is_unparseable() -> None:
    with OpenAIStub([("content", "I cannot help with that."), ("content", "no braces here")]) as stub:
        llm = make_llm(stub)
        with pytest.raises(LLMError, match="no valid answer"):
            llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=2)
        assert len(stub.chat_requests) == 2


# ---------------------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_request_and_variant_makes_a_new_one(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with OpenAIStub([("tool", {"inputs": ["first"]}), ("tool", {"inputs": ["second"]})]) as stub:
        llm = make_llm(stub, cache=cache)
        first = llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert first == {"inputs": ["first"]}
        assert len(stub.chat_requests) == 1
        assert len(cache) == 1

        again = llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert again == first
        assert len(stub.chat_requests) == 1  # no HTTP request for the cached answer
        assert llm.usage.cached == 1
        assert llm.usage.calls == 1

        other = llm.call_tool(MESSAGES, NAME, SCHEMA, variant=1)
        assert other == {"inputs": ["second"]}
        assert len(stub.chat_requests) == 2
        assert len(cache) == 2
    assert llm.usage.calls == 2
    assert llm.usage.cached == 1
    cache.close()


def test_cached_answer_is_a_copy(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with OpenAIStub([("tool", {"inputs": ["a"]})]) as stub:
        llm = make_llm(stub, cache=cache)
        llm.call_tool(MESSAGES, NAME, SCHEMA)
        hit = llm.call_tool(MESSAGES, NAME, SCHEMA)
        hit["inputs"] = ["mutated"]
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"inputs": ["a"]}
        assert len(stub.chat_requests) == 1
    cache.close()


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"max_tokens": 100},
        {"messages": MESSAGES + [{"role": "user", "content": "More."}]},
        {"name": "other_tool"},
        {"schema": {**SCHEMA, "required": []}},
    ],
    ids=["temperature", "max_tokens", "messages", "tool_name", "schema"],
)
def test_cache_misses_when_request_changes(tmp_path: Path, change: dict) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with OpenAIStub([("tool", {"inputs": ["a"]}), ("tool", {"inputs": ["b"]})]) as stub:
        llm = make_llm(stub, cache=cache)
        llm.call_tool(MESSAGES, NAME, SCHEMA)
        call = {"messages": MESSAGES, "name": NAME, "schema": SCHEMA, "temperature": 0.0, "max_tokens": 512, **change}
        assert llm.call_tool(**call) == {"inputs": ["b"]}
        assert len(stub.chat_requests) == 2
    assert llm.usage.cached == 0
    cache.close()


def test_cache_persists_across_clients_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.sqlite"
    with OpenAIStub([("tool", {"inputs": ["kept"]})]) as stub:
        cache = ResponseCache(path)
        make_llm(stub, cache=cache).call_tool(MESSAGES, NAME, SCHEMA)
        cache.close()

        reopened = ResponseCache(path)
        fresh = make_llm(stub, cache=reopened)
        assert fresh.call_tool(MESSAGES, NAME, SCHEMA) == {"inputs": ["kept"]}
        assert len(stub.chat_requests) == 1
        assert fresh.usage.cached == 1
        assert fresh.usage.calls == 0
        reopened.close()


def test_unparseable_answers_are_not_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with OpenAIStub([("raw_args", "{not json")]) as stub:
        llm = make_llm(stub, cache=cache)
        with pytest.raises(LLMError):
            llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=1)
    assert len(cache) == 0
    cache.close()


# ---------------------------------------------------------------------------------------- service errors


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_raise_after_sdk_retries(status: int) -> None:
    with OpenAIStub([("status", status)] * 5) as stub:
        llm = make_llm(stub, max_retries=1, timeout=2.0)
        with pytest.raises(LLMError, match="failed after 1 retries"):
            llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=3)
        assert len(stub.chat_requests) == 2  # the first try + max_retries, no outer re-attempts
        assert stub.remaining == 3
    assert llm.usage.failed == 1
    assert llm.usage.calls == 0
    assert llm.usage.tokens == 0


def test_server_error_recovered_by_sdk_retry() -> None:
    with OpenAIStub([("status", 500), ("tool", {"inputs": ["after retry"]})]) as stub:
        llm = make_llm(stub, max_retries=1)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"inputs": ["after retry"]}
        assert len(stub.chat_requests) == 2
    assert llm.usage.calls == 1
    assert llm.usage.failed == 0


def test_server_errors_without_retry_after_still_bounded() -> None:
    # No retry-after header: the SDK's own backoff applies (~0.4-0.5 s for a single retry).
    with OpenAIStub([("status", 500)] * 5, retry_after_ms=None) as stub:
        llm = make_llm(stub, max_retries=1)
        started = time.monotonic()
        with pytest.raises(LLMError):
            llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert time.monotonic() - started < 5
        assert len(stub.chat_requests) == 2
    assert llm.usage.failed == 1


def test_bad_request_is_not_retried() -> None:
    with OpenAIStub([("status", 400)] * 3) as stub:
        llm = make_llm(stub, max_retries=2)
        with pytest.raises(LLMError, match="refused the request"):
            llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert len(stub.chat_requests) == 1
    assert llm.usage.failed == 1


def test_rejected_key_raises() -> None:
    with OpenAIStub([("status", 401)]) as stub:
        llm = make_llm(stub, max_retries=2)
        with pytest.raises(LLMError, match="rejected the API key"):
            llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert len(stub.chat_requests) == 1


def test_exhausted_script_answers_500() -> None:
    with OpenAIStub([]) as stub:
        llm = make_llm(stub, max_retries=0)
        with pytest.raises(LLMError, match="InternalServerError"):
            llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert len(stub.chat_requests) == 1
    assert llm.usage.failed == 1


def test_connection_refused_during_call_raises() -> None:
    llm = LLM(base_url=f"http://127.0.0.1:{free_closed_port()}/v1", model="m", api_key="test",
              timeout=2.0, max_retries=0)
    with pytest.raises(LLMError, match="APIConnectionError"):
        llm.call_tool(MESSAGES, NAME, SCHEMA)
    assert llm.usage.failed == 1
    assert llm.usage.calls == 0


# ---------------------------------------------------------------------------------------- check()


def test_check_succeeds_against_stub() -> None:
    with OpenAIStub([]) as stub:
        make_llm(stub).check()
        assert [(r["method"], r["path"]) for r in stub.requests] == [("GET", "/v1/models")]
        assert stub.requests[0]["headers"]["authorization"] == "Bearer test"


def test_check_unreachable_endpoint_raises() -> None:
    base_url = f"http://127.0.0.1:{free_closed_port()}/v1"
    llm = LLM(base_url=base_url, model="m", api_key="test", timeout=2.0, max_retries=0)
    with pytest.raises(LLMError, match="Cannot reach") as info:
        llm.check()
    assert base_url in str(info.value)


def test_check_rejected_key_raises() -> None:
    with OpenAIStub([], models_status=401) as stub:
        with pytest.raises(LLMError, match="rejected the API key"):
            make_llm(stub).check()


def test_check_tolerates_missing_models_route() -> None:
    with OpenAIStub([], models_status=404) as stub:
        make_llm(stub).check()  # no raise
        assert len(stub.requests) == 1


# ---------------------------------------------------------------------------------------- rightmost_json_object


def test_rightmost_json_object_nested_braces() -> None:
    text = 'prefix {"a": {"b": {"c": 1}}, "d": [1, {"e": 2}]} suffix'
    assert rightmost_json_object(text) == {"a": {"b": {"c": 1}}, "d": [1, {"e": 2}]}


def test_rightmost_json_object_returns_rightmost_of_two() -> None:
    assert rightmost_json_object('first {"x": 1} then {"y": 2} done') == {"y": 2}


def test_rightmost_json_object_skips_invalid_trailing_braces() -> None:
    assert rightmost_json_object('{"x": 1} and then {oops}') == {"x": 1}


@pytest.mark.parametrize("text", ["", "no braces", "{not json}", "{unclosed", "closed}", "[1, 2, 3]"])
def test_rightmost_json_object_invalid_returns_none(text: str) -> None:
    assert rightmost_json_object(text) is None


def test_rightmost_json_object_tolerates_control_characters_in_strings() -> None:
    assert rightmost_json_object('{"s": "line1\nline2"}') == {"s": "line1\nline2"}


def test_rerun_after_a_repair_retry_is_served_from_cache(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with OpenAIStub([("raw_args", "{not json"), ("tool", {"inputs": ["ok"]})]) as stub:
        llm = make_llm(stub, cache=cache)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=3) == {"inputs": ["ok"]}
        again = make_llm(stub, cache=cache)
        assert again.call_tool(MESSAGES, NAME, SCHEMA, attempts=3) == {"inputs": ["ok"]}
        assert len(stub.chat_requests) == 2 and again.usage.calls == 0 and again.usage.cached == 1


def test_rightmost_json_object_braces_inside_strings() -> None:
    assert rightmost_json_object('say {"s": "}"} and {"t": "{x"}') == {"t": "{x"}
    assert rightmost_json_object('{"a": {"b": "}"}}') == {"a": {"b": "}"}}
