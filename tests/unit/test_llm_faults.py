"""The LLM client and the generation stage against a real HTTP server that misbehaves on a schedule."""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path

import pytest

from p2m_engine.llm.cache import ResponseCache
from p2m_engine.errors import LLMDeadlineError, LLMError, UnparseableAnswerError
from p2m_engine.llm import LLM, retry_after, retry_delay, schema_problem
from p2m_engine.data.synth import SynthConfig, generate_labelled_examples
from p2m_engine.types import Example, TaskSpec
from tests.faulty_server import FAULTS, FaultSchedule, FaultyServer, Teacher

pytestmark = pytest.mark.timeout(60)

NAME = "write_inputs"
SCHEMA = {
    "type": "object",
    "properties": {"input_1": {"type": "string"}, "input_2": {"type": "string"}},
    "required": ["input_1", "input_2"],
}
MESSAGES = [{"role": "user", "content": 'Write 2 new inputs whose correct label is "spam".'}]
TIMEOUT = 0.3  # the client's timeout; a hanging request is held for HANG seconds
HANG = 1.0
# Faults the transport layer retries (the request is sent again) vs answers that arrive but are unusable
# (the call asks again, within `attempts`).
TRANSPORT = ("429", "500", "503", "timeout", "reset", "truncated", "malformed")
ANSWER = ("wrong_schema", "empty_choices", "error_body")
SPEC = TaskSpec("Is this SMS spam or ham?", (Example("WIN cash now!!", "spam"), Example("see you at 5", "ham")),
                "classification", ("spam", "ham"))


def make_llm(server: FaultyServer, **kw) -> LLM:
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("max_retries", 2)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return LLM(base_url=server.base_url, model="stub-model", api_key="test", **kw)


def test_fault_names_are_all_covered() -> None:
    assert set(TRANSPORT) | set(ANSWER) | {"slow"} == set(FAULTS)


# ---------------------------------------------------------------------------------------- one fault, then an answer


@pytest.mark.parametrize("fault", FAULTS)
def test_call_completes_after_one_fault(fault: str) -> None:
    answer = ("tool", {"input_1": "a", "input_2": "b"})
    script = [("fault", ("slow", answer))] if fault == "slow" else [("fault", fault), answer]
    with FaultyServer(script, hang=HANG) as server:
        llm = make_llm(server)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"input_1": "a", "input_2": "b"}
        assert server.injected == {fault: 1}
        # A slow answer is the answer; every other fault costs exactly one more request.
        assert len(server.chat_requests) == (1 if fault == "slow" else 2)
    assert llm.usage.failed == 0
    assert llm.usage.calls == (2 if fault in ANSWER else 1)


# ---------------------------------------------------------------------------------------- a fault that never ends


@pytest.mark.parametrize("fault", TRANSPORT)
def test_persistent_transport_fault_stops_after_bounded_retries(fault: str) -> None:
    with FaultyServer(schedule=FaultSchedule([fault], every=1), responder=Teacher(), hang=HANG,
                      retry_after="0.05") as server:
        llm = make_llm(server, max_retries=2)
        started = time.monotonic()
        with pytest.raises(LLMError) as info:
            llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=3)
        elapsed = time.monotonic() - started
        assert len(server.chat_requests) == 3  # the first try and max_retries retries; no outer re-attempts
        base_url = server.base_url
    message = str(info.value)
    assert "failed after 2 retries" in message and base_url in message
    assert "Traceback" not in message and len(message) < 400
    assert elapsed < 3 * (TIMEOUT + 0.5)
    assert llm.usage.failed == 1 and llm.usage.calls == 0


@pytest.mark.parametrize("fault", ANSWER)
def test_persistent_unusable_answers_stop_after_attempts(fault: str) -> None:
    with FaultyServer(schedule=FaultSchedule([fault], every=1), responder=Teacher()) as server:
        llm = make_llm(server)
        with pytest.raises(UnparseableAnswerError, match=f"no valid answer for {NAME} after 3 tries"):
            llm.call_tool(MESSAGES, NAME, SCHEMA, attempts=3)
        assert len(server.chat_requests) == 3
    assert llm.usage.calls == 3 and llm.usage.failed == 0


def test_wrong_schema_is_named_in_the_error() -> None:
    with FaultyServer(schedule=FaultSchedule(["wrong_schema"], every=1)) as server:
        with pytest.raises(LLMError, match="missing input_2"):
            make_llm(server).call_tool(MESSAGES, NAME, SCHEMA, attempts=1)


def test_wrong_schema_answers_are_not_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with FaultyServer([("fault", "wrong_schema"), ("tool", {"input_1": "a", "input_2": "b"})]) as server:
        llm = make_llm(server, cache=cache)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"input_1": "a", "input_2": "b"}
    assert len(cache) == 1
    # The same server (its cache identity), now unreachable: the answer comes from the cache, not the network.
    again = LLM(base_url="http://127.0.0.1:9/v1", model="stub-model", api_key="test", cache=cache,
                endpoint=llm.cache_endpoint())
    assert again.call_tool(MESSAGES, NAME, SCHEMA) == {"input_1": "a", "input_2": "b"}
    cache.close()


# ---------------------------------------------------------------------------------------- Retry-After and backoff


def test_retry_after_is_respected() -> None:
    with FaultyServer([("fault", "429"), ("tool", {"input_1": "a", "input_2": "b"})], retry_after="0.4") as server:
        llm = make_llm(server, max_backoff=5.0)
        started = time.monotonic()
        llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert time.monotonic() - started >= 0.4
        assert len(server.chat_requests) == 2


def test_a_huge_retry_after_is_capped_and_still_retried() -> None:
    # The SDK would not retry at all above 60 s; p2m waits its cap and tries again.
    with FaultyServer([("fault", "429"), ("tool", {"input_1": "a", "input_2": "b"})], retry_after="3600") as server:
        llm = make_llm(server, max_backoff=0.2)
        started = time.monotonic()
        assert llm.call_tool(MESSAGES, NAME, SCHEMA)["input_1"] == "a"
        assert 0.2 <= time.monotonic() - started < 2.0
        assert len(server.chat_requests) == 2


def test_retry_after_header_forms() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "nan"}) is None and retry_after({"retry-after": "inf"}) is None
    assert retry_after({}) is None and retry_after(None) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after({"retry-after": future}) <= 31  # type: ignore[operator]


def test_backoff_grows_exponentially_and_is_capped() -> None:
    import random

    rng = random.Random(0)
    waits = [retry_delay(r, None, 0.5, 4.0, rng) for r in range(1, 8)]
    assert 0.375 <= waits[0] <= 0.5 and 0.75 <= waits[1] <= 1.0 and 1.5 <= waits[2] <= 2.0
    assert all(w <= 4.0 for w in waits) and waits[-1] >= 3.0
    assert retry_delay(1, {"retry-after": "10"}, 0.5, 4.0) == 4.0
    assert retry_delay(1, {"retry-after": "1.5"}, 0.5, 4.0) == 1.5
    assert retry_delay(10_000, None, 0.5, 4.0) <= 4.0  # no overflow


def test_bad_client_settings_are_refused() -> None:
    for bad in ({"timeout": 0}, {"max_retries": -1}, {"max_backoff": -1.0}):
        with pytest.raises(LLMError, match="Invalid LLM client settings"):
            LLM(base_url="http://127.0.0.1:9/v1", model="m", **bad)


def test_schema_problem() -> None:
    assert schema_problem({"input_1": "a", "input_2": "b"}, SCHEMA) is None
    assert schema_problem({"input_1": "a"}, SCHEMA) == "missing input_2"
    assert schema_problem({"input_1": "a", "input_2": 3}, SCHEMA) == "input_2 is not of type string"
    assert schema_problem({"n": True}, {"properties": {"n": {"type": "integer"}}}) is not None
    assert schema_problem({"n": 2}, {"properties": {"n": {"type": ["integer", "null"]}}}) is None
    assert schema_problem({"extra": 1}, {"properties": {}, "required": []}) is None


# ---------------------------------------------------------------------------------------- the generation stage


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _generate(server: FaultyServer, out: Path, per_label: int = 4, **kw) -> object:
    llm = make_llm(server, **kw)
    return generate_labelled_examples(SPEC, llm, out, SynthConfig(per_label=per_label, batch_size=2))


@pytest.mark.parametrize("fault", FAULTS)
def test_generation_under_faults_equals_a_clean_run(fault: str, tmp_path: Path) -> None:
    with FaultyServer(responder=Teacher()) as clean:
        _generate(clean, tmp_path / "clean.jsonl")
    with FaultyServer(schedule=FaultSchedule([fault], every=2), responder=Teacher(), hang=HANG) as server:
        res = _generate(server, tmp_path / "faulty.jsonl")
        assert server.injected[fault] >= 2
    assert res.count == 8 and res.per_label == {"spam": 4, "ham": 4}  # type: ignore[attr-defined]
    assert _rows(tmp_path / "faulty.jsonl") == _rows(tmp_path / "clean.jsonl")


@pytest.mark.parametrize("fault", ["503", "reset", "timeout", "malformed"])
def test_generation_stops_clearly_and_keeps_what_it_wrote(fault: str, tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    # Two batches are answered, then the service fails for good.
    with FaultyServer(schedule=FaultSchedule([fault], every=1, start=2), responder=Teacher(), hang=HANG) as server:
        with pytest.raises(LLMError, match="failed after 1 retries"):
            _generate(server, out, per_label=6, max_retries=1)
        assert len(server.chat_requests) == 2 + 2  # two answers, then one try and one retry
    before = _rows(out)
    assert len(before) == 4  # both answered batches were appended before the failure
    # A rerun against a working service continues from the file: nothing written is lost or rewritten.
    with FaultyServer(responder=Teacher()) as server:
        res = _generate(server, out, per_label=6)
    after = _rows(out)
    assert after[: len(before)] == before
    assert res.count == 12 == len(after)  # type: ignore[attr-defined]


def test_generation_call_count_is_bounded_when_every_answer_is_unusable(tmp_path: Path) -> None:
    with FaultyServer(schedule=FaultSchedule(["wrong_schema"], every=1)) as server:
        res = _generate(server, tmp_path / "gen.jsonl", per_label=4)
        requests = len(server.chat_requests)
    assert res.count == 0 and set(res.stopped_labels) == {"spam", "ham"}  # type: ignore[attr-defined]
    # max_failed_batches (4) batches per label, each tried `attempts` (3) times.
    assert requests == 2 * 4 * 3


# ---------------------------------------------------------------------------------------- settings and the planner


def test_client_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.llms import LLMSettings

    assert LLMSettings().client_options(900, 1) == {"timeout": 900, "max_retries": 1, "deadline": None}
    assert LLMSettings().client_options(120, 4, 600.0)["deadline"] == 600.0
    monkeypatch.setenv("P2M_LLM_TIMEOUT", "0.5")
    monkeypatch.setenv("P2M_LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("P2M_LLM_MAX_BACKOFF", "0.02")
    monkeypatch.setenv("P2M_LLM_DEADLINE", "30")
    opts = LLMSettings().client_options(120, 4, 600.0)
    assert opts == {"timeout": 0.5, "max_retries": 0, "max_backoff": 0.02, "backoff": 0.02, "deadline": 30.0}
    assert LLMSettings(timeout=7.0).client_options(120, 4)["timeout"] == 7.0  # an explicit value wins
    llm = LLM(base_url="http://127.0.0.1:9/v1", model="m", **opts)
    assert (llm.timeout, llm.max_retries, llm.max_backoff, llm.deadline) == (0.5, 0, 0.02, 30.0)
    assert llm.rate is None
    # Rate limits: a limiter with the given requests and tokens per minute.
    monkeypatch.setenv("P2M_LLM_RPM", "500")
    monkeypatch.setenv("P2M_LLM_TPM", "200000")
    rate = LLMSettings().client_options(120, 4)["rate"]
    assert (rate.rpm, rate.tpm) == (500.0, 200000.0)


@pytest.mark.parametrize("var,value", [("P2M_LLM_TIMEOUT", "soon"), ("P2M_LLM_TIMEOUT", "0"),
                                       ("P2M_LLM_MAX_RETRIES", "-1"), ("P2M_LLM_MAX_RETRIES", "2.5"),
                                       ("P2M_LLM_MAX_BACKOFF", "inf"), ("P2M_LLM_RPM", "0"), ("P2M_LLM_TPM", "-5")])
def test_bad_client_settings_in_the_environment_are_refused(var: str, value: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.llms import LLMSettings

    monkeypatch.setenv(var, value)
    with pytest.raises(LLMError, match=var):
        LLMSettings()


@pytest.mark.parametrize("fault", ["503", "timeout", "malformed", "empty_choices", "error_body"])
def test_planner_falls_back_to_the_rules_when_its_llm_fails(fault: str) -> None:
    from agent.planner import ask_planner

    with FaultyServer(schedule=FaultSchedule([fault], every=1), hang=HANG) as server:
        llm = make_llm(server, max_retries=1)  # the planner asks through the build's one client, with its retries
        action, reason, tokens, args = ask_planner(llm, "Classify", {"labels": "a, b"}, ["search_models", "finish"])
        assert len(server.chat_requests) <= 2
    assert action is None and args is None and reason.startswith("the planner LLM failed")
    assert tokens["tokens_in"] == llm.usage.prompt_tokens  # whatever the service billed is counted, as for the teacher


def test_planner_with_a_rejected_key_stops_the_build() -> None:
    from agent.planner import ask_planner

    with FaultyServer([("status", 401)]) as server:
        with pytest.raises(LLMError, match="rejected the API key"):
            ask_planner(make_llm(server, max_retries=0), "Classify", {"labels": "a, b"}, ["search_models", "finish"])


def test_planner_calls_obey_the_deadline_of_the_one_client() -> None:
    from agent.planner import ask_planner

    with FaultyServer([("fault", "429")] * 20, retry_after="0.4") as server:
        llm = make_llm(server, max_retries=5, max_backoff=5.0, deadline=0.6)
        started = time.monotonic()
        action, reason, _, args = ask_planner(llm, "Classify", {"labels": "a, b"}, ["search_models", "finish"])
        assert time.monotonic() - started < 0.6
    assert action is None and args is None and reason == "the planner LLM failed: LLMDeadlineError"


# ---------------------------------------------------------------------------------------- the deadline of one answer


def test_deadline_stops_retries_that_would_outlast_it() -> None:
    # Each 429 asks for a 0.4 s wait: with a 0.6 s deadline the second wait cannot fit, so the call stops with
    # a reason instead of sleeping past its deadline.
    with FaultyServer([("fault", "429")] * 5 + [("tool", {"input_1": "a", "input_2": "b"})],
                      retry_after="0.4") as server:
        llm = make_llm(server, max_retries=5, max_backoff=5.0, deadline=0.6)
        started = time.monotonic()
        with pytest.raises(LLMDeadlineError, match="0.6s deadline"):
            llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert time.monotonic() - started < 0.6
        assert len(server.chat_requests) == 2 and llm.usage.failed == 1


def test_deadline_cuts_a_hanging_attempt_short() -> None:
    # A hanging request would get the full per-attempt timeout; under the deadline it gets only what is left.
    with FaultyServer([("fault", "timeout")] * 5, hang=HANG) as server:
        llm = make_llm(server, timeout=5.0, max_retries=5, deadline=0.5)
        started = time.monotonic()
        with pytest.raises(LLMError, match="deadline"):
            llm.call_tool(MESSAGES, NAME, SCHEMA)
        assert time.monotonic() - started < 0.9


def test_a_call_within_its_deadline_is_unchanged() -> None:
    with FaultyServer([("fault", "503"), ("tool", {"input_1": "a", "input_2": "b"})]) as server:
        llm = make_llm(server, deadline=10.0)
        assert llm.call_tool(MESSAGES, NAME, SCHEMA) == {"input_1": "a", "input_2": "b"}
    with pytest.raises(LLMError, match="deadline=0"):
        LLM(base_url="http://127.0.0.1:9", model="m", deadline=0)


def test_a_deadline_during_generation_stops_it_instead_of_passing_for_a_bad_batch(tmp_path: Path) -> None:
    # An unparseable batch is skipped and generation goes on; a service out of time is not a bad batch: the
    # error reaches the caller (the build records it and can resume), whatever its message says.
    with FaultyServer([("fault", "429")] * 20, retry_after="0.4") as server:
        with pytest.raises(LLMDeadlineError):
            _generate(server, tmp_path / "out.jsonl", max_retries=5, max_backoff=5.0, deadline=0.6)
        assert len(server.chat_requests) == 2  # the first batch's two tries; nothing after it was asked
