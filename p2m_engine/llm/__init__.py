"""One client for every LLM backend: any OpenAI-compatible chat endpoint (an API, vLLM, Ollama,
or the embedded llama.cpp server), with structured output, retries, timeouts and a response cache."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from p2m_engine.llm.cache import ResponseCache, cache_key
from p2m_engine.llm.rate import RateLimiter, estimate_tokens
from p2m_engine.errors import LLMAuthError, LLMDeadlineError, LLMError, UnparseableAnswerError
from p2m_engine.redact import redact

logger = logging.getLogger(__name__)


@dataclass
class Usage:
    """Counters of what the LLM was asked; cached answers are counted apart (they cost nothing)."""

    calls: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "cached": self.cached,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def rightmost_json_object(text: str) -> dict[str, Any] | None:
    """Find the right-most complete JSON object in text (repair for chatty models).

    Every '{' is tried as the start of a JSON value; of the objects that parse, the one that ends last
    wins, and of those the outermost. Braces inside strings are handled by the JSON decoder itself.
    """
    decoder = json.JSONDecoder(strict=False)
    best: tuple[int, int, dict[str, Any]] | None = None
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            obj, end = None, -1
        if isinstance(obj, dict) and (best is None or end > best[0] or (end == best[0] and pos < best[1])):
            best = (end, pos, obj)
        pos = text.find("{", pos + 1)
    return best[2] if best else None


# HTTP statuses worth another try: request timeout, conflict/lock, rate limit, and server-side errors.
RETRY_STATUSES = frozenset({408, 409, 429})


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked to wait (`retry-after-ms`, `retry-after` in seconds or as an HTTP date), or None."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            parsed = email.utils.parsedate_tz(raw) if name == "retry-after" else None
            if parsed is None:
                continue
            value = email.utils.mktime_tz(parsed) - time.time()
        if value == value and value != float("inf"):  # not NaN, finite
            return max(value, 0.0)
    return None


def retry_delay(retry: int, headers: Mapping[str, str] | None, backoff: float, max_backoff: float,
                rng: random.Random | None = None) -> float:
    """How long to wait before retry number `retry` (1-based).

    The server's Retry-After when it gives one, else exponential backoff (`backoff` * 2^(retry-1)) with
    jitter; never more than `max_backoff`, so a server asking for an hour cannot stall a build.
    """
    asked = retry_after(headers)
    if asked is not None:
        return min(asked, max_backoff)
    wait = backoff * 2 ** min(retry - 1, 30)
    return min(wait, max_backoff) * (rng or random).uniform(0.75, 1.0)


def _type_ok(value: Any, kind: Any) -> bool:
    if isinstance(kind, list):
        return any(_type_ok(value, k) for k in kind)
    checks = {
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return checks.get(kind, lambda v: True)(value)


def schema_problem(obj: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Why `obj` does not fit the top level of a function's JSON `schema` (required keys, value types), or None.

    Only what a caller relies on is checked; enums and lengths are left to the caller, which can map or cut.
    """
    missing = [k for k in schema.get("required", []) if k not in obj]
    if missing:
        return f"missing {', '.join(missing)}"
    props = schema.get("properties") or {}
    for key, value in obj.items():
        kind = (props.get(key) or {}).get("type")
        if kind is not None and not _type_ok(value, kind):
            return f"{key} is not of type {kind}"
    return None


@dataclass
class LLM:
    """A chat model behind an OpenAI-compatible endpoint.

    Structured answers use function calling with the tool named explicitly: it works on OpenAI and on
    the llama.cpp server (whose `json_schema` response format answers HTTP 500).

    Service faults are retried here, not in the SDK, so that every wait is bounded: connection errors,
    timeouts, HTTP 408/409/429/5xx and unreadable response bodies are retried at most `max_retries` times,
    waiting the server's Retry-After or an exponential backoff, each wait capped at `max_backoff` seconds.
    """

    base_url: str | None
    model: str
    api_key: str = field(default="unused", repr=False)
    cache: ResponseCache | None = None
    timeout: float = 120.0
    max_retries: int = 4
    usage: Usage = field(default_factory=Usage)
    backoff: float = 0.5
    max_backoff: float = 30.0
    deadline: float | None = None
    """Seconds one answer may take in all, retries and waits included (None: only the per-attempt bounds)."""
    prices: dict[str, tuple[float, float]] | None = None
    """Extra entries of the price table (USD per 1M tokens in/out), e.g. from P2M_PRICES."""
    endpoint: str | None = None
    """Who answers, for the response cache (default: the base URL), so that one server's answers are never
    served for another's. The embedded server gives its model file (its port changes every run); a resumed
    build whose endpoint moved gives the URL it was built with (the same server, so its answers stay valid)."""
    weights: Path | None = None
    """The model file behind a local server (the embedded GGUF), so a student can start from the teacher's own
    weights; None for an API."""
    rate: RateLimiter | None = None
    """Requests and tokens per minute this client may send, shared by its threads (None: no client-side limit)."""

    def __post_init__(self) -> None:
        from openai import OpenAI

        if (self.timeout <= 0 or self.max_retries < 0 or self.backoff < 0 or self.max_backoff < 0
                or (self.deadline is not None and self.deadline <= 0)):
            raise LLMError(f"Invalid LLM client settings: timeout={self.timeout}, max_retries={self.max_retries}, "
                           f"backoff={self.backoff}, max_backoff={self.max_backoff}, deadline={self.deadline}.")
        # The SDK's own retries are off: they skip a Retry-After above 60 s and cannot be capped.
        self._client = OpenAI(base_url=self.base_url, api_key=self.api_key or "unused", timeout=self.timeout,
                              max_retries=0)
        self._lock = threading.Lock()

    def _redact(self, text: str) -> str:
        """Text from the server or the HTTP stack with the API key masked (a server may echo headers)."""
        return redact(text, [self.api_key])

    def cost_usd(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> float | None:
        """USD of the tokens used so far (or of the given counts): 0 for a local server, None when unknown."""
        from p2m_engine.llm.pricing import cost

        return cost(self.model, self.base_url, self.usage.prompt_tokens if prompt_tokens is None else prompt_tokens,
                    self.usage.completion_tokens if completion_tokens is None else completion_tokens, self.prices)

    def cache_endpoint(self) -> str:
        """The endpoint part of the cache key: `endpoint`, else the base URL (OpenAI's when none is set)."""
        return (self.endpoint or self.base_url or "https://api.openai.com/v1").rstrip("/")

    def describe(self) -> dict[str, Any]:
        """What to record in a config or trace: never the key."""
        return {"model": self.model, "base_url": self.base_url}

    def check(self) -> None:
        """Fail fast with a clear message when the endpoint does not answer.

        Raises:
            LLMError: the endpoint is unreachable or rejects the key.
        """
        import openai

        try:
            self._client.with_options(timeout=min(10.0, self.timeout), max_retries=1).models.list()
        except openai.AuthenticationError as e:
            raise LLMAuthError(f"The LLM endpoint {self.base_url or 'api.openai.com'} rejected the API key.") from e
        except openai.NotFoundError:
            return  # some servers have no /models route; chat may still work
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise LLMError(
                f"Cannot reach the LLM endpoint {self.base_url or 'api.openai.com'}: {type(e).__name__}. "
                "Check --base-url, or use --llm embedded to run offline."
            ) from e

    def call_tool(
        self,
        messages: list[dict[str, Any]],
        name: str,
        schema: dict[str, Any],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        variant: int = 0,
        attempts: int = 3,
    ) -> dict[str, Any]:
        """Ask for one structured answer: the arguments of the function `name` with JSON `schema`.

        Args:
            messages: chat messages as OpenAI dicts.
            name: the function name the model must call.
            schema: JSON schema of the arguments (give string fields a maxLength, or answers get cut).
            temperature: sampling temperature.
            max_tokens: completion limit.
            variant: part of the cache key, so repeated samples of one prompt are distinct calls.
            attempts: how many answers to try before giving up on an unparseable one.

        Returns:
            The parsed arguments.

        Raises:
            LLMError: no parseable answer after `attempts` tries, or the service keeps failing.
        """
        params = {"temperature": temperature, "max_tokens": max_tokens, "tool": name, "schema": schema, "variant": variant}
        key = cache_key(self.model, params, messages, self.cache_endpoint())
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            with self._lock:
                self.usage.cached += 1
            return dict(cached)
        last_error = ""
        started = time.monotonic()  # the deadline covers every attempt at this answer
        for attempt in range(attempts):
            raw = self._complete(messages, name, schema, temperature, max_tokens, started)
            parsed, problem = self._parse(raw, schema)
            if parsed is not None:
                if self.cache is not None:
                    self.cache.put(key, self.model, parsed)
                return parsed
            last_error = self._redact(problem)
            logger.info("LLM attempt %d for %s gave no valid answer: %s", attempt + 1, name, last_error)
        raise UnparseableAnswerError(f"The LLM gave no valid answer for {name} after {attempts} tries ({last_error}).")

    def _complete(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any],
                  temperature: float, max_tokens: int, started: float) -> dict[str, Any]:
        """One answer from the service, retried on transient faults; the raw tool-call arguments and content.

        Raises:
            LLMError: the key is rejected, the request is refused, or the service still fails after the retries.
        """
        tools = [{"type": "function", "function": {"name": name, "description": f"Return the {name}.", "parameters": schema}}]
        return _answer(self._create(name, started, messages=messages, tools=tools,
                                    tool_choice={"type": "function", "function": {"name": name}},
                                    temperature=temperature, max_tokens=max_tokens))

    def first_token_logprobs(self, messages: list[dict[str, Any]], *, top: int = 20, name: str = "score") -> dict[str, float]:
        """The log-probabilities of the most likely first answer tokens (greedy, one token, `top` alternatives).

        Scoring the options of a question this way asks a small model only to judge, not to write: the
        reliable use of a small teacher (contextual calibration, arXiv 2102.09690). llama.cpp's server
        returns them when started with `--logits_all true`; OpenAI-compatible APIs take `logprobs`.

        Raises:
            LLMError: the service fails, or its answer carries no log-probabilities.
        """
        params = {"logprobs": top, "max_tokens": 1, "temperature": 0.0}
        key = cache_key(self.model, params, messages, self.cache_endpoint())
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            with self._lock:
                self.usage.cached += 1
            return {str(k): float(v) for k, v in cached.items()}
        resp = self._create(name, time.monotonic(), messages=messages, logprobs=True, top_logprobs=top,
                            max_tokens=1, temperature=0.0)
        found = _first_token_logprobs(resp)
        if not found:
            raise LLMError(f"The LLM service at {self.base_url or 'api.openai.com'} returned no log-probabilities "
                           "(a llama.cpp server needs --logits_all true).")
        if self.cache is not None:
            self.cache.put(key, self.model, found)
        return found

    def _create(self, name: str, started: float, **request: Any) -> Any:
        """One chat completion, retried on transient faults within the deadline that began at `started`.

        Raises:
            LLMError: the key is rejected, the request is refused, or the service still fails after the retries.
        """
        import openai

        headers: Mapping[str, str] | None = None
        last = ""
        estimated = estimate_tokens(request.get("messages", []), int(request.get("max_tokens") or 0))
        for retry in range(self.max_retries + 1):
            if self.rate is not None:
                # A retry is a request too; the time spent waiting for the limits counts against the deadline.
                self.rate.acquire(estimated)
            left = None if self.deadline is None else self.deadline - (time.monotonic() - started)
            wait = retry_delay(retry, headers, self.backoff, self.max_backoff) if retry else 0.0
            if left is not None and wait >= left:
                self._count_failure()
                raise LLMDeadlineError(f"The LLM service at {self.base_url or 'api.openai.com'} did not answer {name} "
                                       f"within the {self.deadline:g}s deadline ({last or 'no answer yet'}). Try again "
                               "later (answers so far are cached), or raise the deadline.")
            if retry:
                logger.info("LLM %s: %s; retry %d of %d in %.2fs", name, last, retry, self.max_retries, wait)
                time.sleep(wait)
            headers = None
            # The last attempt before the deadline gets only the time that is left.
            client = self._client if left is None else self._client.with_options(
                timeout=max(0.001, min(self.timeout, left - wait)))
            try:
                resp = client.chat.completions.create(model=self.model, **request)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                self._count_failure()
                raise LLMAuthError(f"The LLM endpoint rejected the API key (HTTP {e.status_code}).") from None
            except openai.APIStatusError as e:
                if e.status_code in RETRY_STATUSES or e.status_code >= 500:
                    headers, last = e.response.headers, f"{type(e).__name__} (HTTP {e.status_code})"
                    continue
                self._count_failure()
                raise LLMError(f"The LLM service refused the request (HTTP {e.status_code}): "
                               f"{self._redact(str(e.message))[:200]}") from None
            except openai.APITimeoutError:
                last = f"APITimeoutError (no answer within {self.timeout:g}s)"
                continue
            except openai.APIConnectionError as e:
                cause = type(e.__cause__).__name__ if e.__cause__ is not None else "no answer"
                last = f"APIConnectionError ({cause})"
                continue
            except (openai.APIResponseValidationError, ValueError) as e:
                # An unreadable body (cut-off or not JSON): a proxy or a crashing server; worth another try.
                last = f"unreadable response ({type(e).__name__})"
                continue
            usage = getattr(resp, "usage", None)
            used_in, used_out = _int(getattr(usage, "prompt_tokens", 0)), _int(getattr(usage, "completion_tokens", 0))
            with self._lock:
                self.usage.calls += 1
                self.usage.prompt_tokens += used_in
                self.usage.completion_tokens += used_out
            if self.rate is not None:
                self.rate.settle(estimated, used_in + used_out)
            logger.debug("LLM %s answered in %.2fs", name, time.monotonic() - started)
            return resp
        self._count_failure()
        where = self.base_url or "api.openai.com"
        raise LLMError(f"The LLM service at {where} failed after {self.max_retries} retries: {last}. "
                       "Try again later (answers so far are cached), or raise the timeout or retry settings.")

    def _count_failure(self) -> None:
        with self._lock:
            self.usage.failed += 1

    @staticmethod
    def _parse(raw: dict[str, Any], schema: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
        """The first answer that is a JSON object fitting `schema`, or (None, why there is none)."""
        candidates: list[Any] = []
        for args in raw.get("arguments", []):
            try:
                candidates.append(json.loads(args, strict=False) if isinstance(args, str) else args)
            except json.JSONDecodeError:
                candidates.append(rightmost_json_object(str(args)))
        candidates.append(rightmost_json_object(raw.get("content") or ""))
        problem = f"unparseable answer: {str(raw)[:120]!r}"
        for obj in candidates:
            if not isinstance(obj, dict):
                continue
            bad = schema_problem(obj, schema) if schema else None
            if bad is None:
                return obj, ""
            problem = f"answer does not fit the schema ({bad}): {json.dumps(obj, ensure_ascii=False)[:120]!r}"
        return None, problem


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _answer(resp: Any) -> dict[str, Any]:
    """Tool-call arguments and text of the first choice, read defensively: a server may send any JSON."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        return {"arguments": [], "content": ""}
    msg = getattr(choices[0], "message", None)
    calls = getattr(msg, "tool_calls", None)
    arguments = []
    for call in calls if isinstance(calls, list) else []:
        args = getattr(getattr(call, "function", None), "arguments", None)
        if isinstance(args, (str, dict)):
            arguments.append(args)
    content = getattr(msg, "content", None)
    return {"arguments": arguments, "content": content if isinstance(content, str) else ""}


def _first_token_logprobs(resp: Any) -> dict[str, float]:
    """{token: log-probability} of the first generated token's alternatives, read defensively."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        return {}
    content = getattr(getattr(choices[0], "logprobs", None), "content", None)
    if not isinstance(content, list) or not content:
        return {}
    out: dict[str, float] = {}
    first = content[0]
    for alt in [*(getattr(first, "top_logprobs", None) or []), first]:
        token, lp = getattr(alt, "token", None), getattr(alt, "logprob", None)
        if isinstance(token, str) and isinstance(lp, (int, float)) and lp == lp:
            out[token] = max(float(lp), out.get(token, float("-inf")))
    return out
