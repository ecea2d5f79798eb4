"""Client-side rate limits (requests and tokens per minute): on a fake clock, and through the real client
against the loopback OpenAI stand-in."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from p2m_engine.llm import LLM
from p2m_engine.llm.rate import RateLimiter, estimate_tokens
from tests.openai_stub import OpenAIStub


class FakeClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


def test_requests_per_minute_start_with_a_minute_of_allowance_then_go_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(63):
        limiter.acquire(10)
        sent.append(clock.now)
    # A full bucket: the first 60 go at once; then one a second (60 a minute).
    assert sent[:60] == [0.0] * 60
    assert sent[60:] == pytest.approx([1.0, 2.0, 3.0])
    assert limiter.waited == pytest.approx(3.0)


def test_tokens_per_minute_hold_back_large_requests_and_the_reported_usage_corrects_the_estimate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=600, clock=clock, sleep=clock.sleep)  # 10 tokens a second
    limiter.acquire(500)
    assert clock.now == 0.0
    limiter.acquire(200)  # 100 left: waits for 100 more tokens
    assert clock.now == pytest.approx(10.0)
    # The answer used far fewer tokens than estimated: the difference comes back at once.
    limiter.settle(200, 20)
    limiter.acquire(180)
    assert clock.now == pytest.approx(10.0)
    # A request larger than a minute's allowance waits for a full bucket and then goes alone.
    limiter.acquire(10_000)
    assert clock.now == pytest.approx(70.0)
    # Both limits: the tighter one decides.
    both = RateLimiter(rpm=6000, tpm=60, clock=clock, sleep=clock.sleep)
    start = clock.now
    both.acquire(60)
    both.acquire(30)
    assert clock.now - start == pytest.approx(30.0)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rpm"):
        RateLimiter(rpm=0)
    with pytest.raises(ValueError, match="tpm"):
        RateLimiter(tpm=-1)


def test_estimate_counts_the_prompt_and_the_completion_limit() -> None:
    assert estimate_tokens([{"role": "user", "content": "x" * 400}, {"role": "system", "content": None}], 50) == 150


def test_the_client_keeps_the_limits_across_threads_and_retries() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=4, clock=clock, sleep=clock.sleep)
    # Ten answers, the third a 429 (retried: a retry is a request too); eight threads ask at once.
    script = [("tool", {"x": "a"})] * 2 + [("status", 429)] + [("tool", {"x": "b"})] * 8
    with OpenAIStub(script) as stub:
        llm = LLM(base_url=stub.base_url, model="m", api_key="k", rate=limiter, max_backoff=0.01, backoff=0.001)
        schema = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda i: llm.call_tool([{"role": "user", "content": f"q{i}"}], "f", schema,
                                                            variant=i), range(10)))
    assert len(answers) == 10 and len(stub.chat_requests) == 11
    # 11 requests at 4 a minute, 4 allowed at once: the 11th may leave only after (11 - 4) * 15 s.
    assert clock.now == pytest.approx(7 * 15.0)
    assert llm.usage.calls == 10
