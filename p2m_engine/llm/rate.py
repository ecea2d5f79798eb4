"""Client-side rate limits: requests and tokens per minute, shared by every thread of one LLM client.

An API account has limits (OpenAI's RPM and TPM); a build with many requests in flight that ignores them gets
HTTP 429s and loses time in retries. Two token buckets, as in OpenAI's own parallel request processor
(openai-cookbook `api_request_parallel_processor.py`): each holds at most a minute's allowance and refills
continuously; a request waits until both have room for it. A request's tokens are estimated before it is sent
(prompt characters / 4, plus its `max_tokens`: what the API itself counts against TPM) and corrected by the
usage its answer reports.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


def estimate_tokens(messages: list[dict[str, Any]], max_tokens: int) -> int:
    """A request's tokens before it is sent: about four characters a token, plus the completion limit."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + max_tokens


@dataclass
class RateLimiter:
    """At most `rpm` requests and `tpm` tokens in any minute (None: no limit on that count)."""

    rpm: float | None = None
    tpm: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self._lock = threading.Lock()
        self._requests = float(self.rpm or 0)  # both buckets start full: a minute's allowance
        self._tokens = float(self.tpm or 0)
        self._at = self.clock()
        self.waited = 0.0
        """Seconds spent waiting for the limits, in all threads."""

    def _refill(self) -> None:
        now = self.clock()
        elapsed, self._at = now - self._at, now
        if self.rpm:
            self._requests = min(self.rpm, self._requests + elapsed * self.rpm / 60)
        if self.tpm:
            self._tokens = min(self.tpm, self._tokens + elapsed * self.tpm / 60)

    def acquire(self, tokens: int) -> None:
        """Wait until one request of `tokens` tokens fits both limits, then take it from the buckets.

        A request larger than a whole minute's tokens waits for a full bucket and then goes alone.
        """
        need = min(float(tokens), float(self.tpm)) if self.tpm else 0.0
        while True:
            with self._lock:
                self._refill()
                short = []
                if self.rpm and self._requests < 1:
                    short.append((1 - self._requests) * 60 / self.rpm)
                if self.tpm and self._tokens < need:
                    short.append((need - self._tokens) * 60 / self.tpm)
                if not short:
                    if self.rpm:
                        self._requests -= 1
                    if self.tpm:
                        self._tokens -= need
                    return
                wait = max(short)
                self.waited += wait
            self.sleep(wait)

    def settle(self, estimated: int, used: int) -> None:
        """Correct the token bucket once the answer reports the tokens the request really used."""
        if self.tpm and used > 0:
            with self._lock:
                self._tokens -= used - min(float(estimated), float(self.tpm))
