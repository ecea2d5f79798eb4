"""One client for every LLM backend: any OpenAI-compatible chat endpoint (an API, vLLM, Ollama,
or the embedded llama.cpp server), with structured output, retries, timeouts and a response cache."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from p2m_engine.cache import ResponseCache, cache_key
from p2m_engine.errors import LLMError

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


@dataclass
class LLM:
    """A chat model behind an OpenAI-compatible endpoint.

    Structured answers use function calling with the tool named explicitly: it works on OpenAI and on
    the llama.cpp server (whose `json_schema` response format answers HTTP 500).
    """

    base_url: str | None
    model: str
    api_key: str = field(default="unused", repr=False)
    cache: ResponseCache | None = None
    timeout: float = 120.0
    max_retries: int = 4
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        from openai import OpenAI

        self._client = OpenAI(
            base_url=self.base_url, api_key=self.api_key or "unused", timeout=self.timeout, max_retries=self.max_retries
        )
        self._lock = threading.Lock()

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
            self._client.with_options(timeout=10.0, max_retries=1).models.list()
        except openai.AuthenticationError as e:
            raise LLMError(f"The LLM endpoint {self.base_url or 'api.openai.com'} rejected the API key.") from e
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
        key = cache_key(self.model, params, messages)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            with self._lock:
                self.usage.cached += 1
            return dict(cached)
        last_error = ""
        for attempt in range(attempts):
            raw = self._complete(messages, name, schema, temperature, max_tokens)
            parsed = self._parse(raw)
            if parsed is not None:
                if self.cache is not None:
                    self.cache.put(key, self.model, parsed)
                return parsed
            last_error = f"unparseable answer: {str(raw)[:120]!r}"
            logger.info("LLM attempt %d for %s gave no valid JSON", attempt + 1, name)
        raise LLMError(f"The LLM gave no valid answer for {name} after {attempts} tries ({last_error}).")

    def _complete(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any],
                  temperature: float, max_tokens: int) -> dict[str, Any]:
        import openai

        tools = [{"type": "function", "function": {"name": name, "description": f"Return the {name}.", "parameters": schema}}]
        started = time.monotonic()
        try:
            resp = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
                tool_choice={"type": "function", "function": {"name": name}},
                temperature=temperature,
                max_tokens=max_tokens,
            )
        except openai.AuthenticationError as e:
            raise LLMError("The LLM endpoint rejected the API key.") from e
        except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError) as e:
            with self._lock:
                self.usage.failed += 1
            raise LLMError(f"The LLM service failed after {self.max_retries} retries: {type(e).__name__}.") from e
        except openai.BadRequestError as e:
            with self._lock:
                self.usage.failed += 1
            raise LLMError(f"The LLM service refused the request: {e.message[:200]}") from e
        with self._lock:
            self.usage.calls += 1
            if resp.usage:
                self.usage.prompt_tokens += resp.usage.prompt_tokens or 0
                self.usage.completion_tokens += resp.usage.completion_tokens or 0
        logger.debug("LLM %s answered in %.2fs", name, time.monotonic() - started)
        if not resp.choices:
            return {"content": ""}
        msg = resp.choices[0].message
        calls = msg.tool_calls or []
        return {
            "arguments": [c.function.arguments for c in calls if getattr(c, "function", None)],
            "content": msg.content or "",
        }

    @staticmethod
    def _parse(raw: dict[str, Any]) -> dict[str, Any] | None:
        for args in raw.get("arguments", []):
            try:
                obj = json.loads(args, strict=False)
            except (json.JSONDecodeError, TypeError):
                obj = rightmost_json_object(str(args))
            if isinstance(obj, dict):
                return obj
        return rightmost_json_object(raw.get("content") or "")
