"""Open the one LLM client a build uses, for the teacher and the planner alike."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from p2m_engine.llm.cache import ResponseCache
from p2m_engine.errors import LLMError
from p2m_engine.llm import LLM
from p2m_engine.llm.rate import RateLimiter
from p2m_engine.runs import p2m_home

Backend = Literal["embedded", "openai"]
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


# Client settings that may come from the environment, with their types (unset: the backend's default).
_ENV = {"timeout": ("P2M_LLM_TIMEOUT", float), "max_retries": ("P2M_LLM_MAX_RETRIES", int),
        "max_backoff": ("P2M_LLM_MAX_BACKOFF", float), "deadline": ("P2M_LLM_DEADLINE", float),
        "rpm": ("P2M_LLM_RPM", float), "tpm": ("P2M_LLM_TPM", float)}
API_DEADLINE = 600.0


@dataclass
class LLMSettings:
    """What the user chose on the command line (the key is read from the environment at the edge)."""

    backend: str = "embedded"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    n_ctx: int = 4096
    timeout: float | None = None
    """Seconds to wait for one answer (P2M_LLM_TIMEOUT; default 120 for an API, 900 for the embedded server)."""
    max_retries: int | None = None
    """Retries of a failed request (P2M_LLM_MAX_RETRIES; default 4 for an API, 1 for the embedded server)."""
    max_backoff: float | None = None
    """Longest wait between retries, whatever Retry-After says (P2M_LLM_MAX_BACKOFF; default 30)."""
    deadline: float | None = None
    """Seconds one answer may take in all, retries included (P2M_LLM_DEADLINE; default 600 for an API, none for
    the embedded server, whose answers are bounded by its timeout)."""
    rpm: float | None = None
    """Requests per minute the client may send, whatever the concurrency (P2M_LLM_RPM; default: no limit)."""
    tpm: float | None = None
    """Tokens per minute, prompt and completion (P2M_LLM_TPM; default: no limit)."""
    cache_endpoint: str | None = None
    """The endpoint cached answers are keyed on, when it is not `base_url` (a resumed build whose server moved)."""

    def __post_init__(self) -> None:
        for name, (var, kind) in _ENV.items():
            raw = os.environ.get(var)
            if getattr(self, name) is not None or not raw:
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise LLMError(f"{var}={raw!r} is not a {kind.__name__}.") from None
            if not value >= 0 or value == float("inf") or (name in ("timeout", "deadline", "rpm", "tpm") and value == 0):
                raise LLMError(f"{var}={raw!r} must be a positive finite number.")
            setattr(self, name, value)

    def check(self) -> None:
        """What can be checked without contacting anything: the backend and, for an API, a key or a URL.

        Raises:
            LLMError: unknown backend, or --llm openai without OPENAI_API_KEY or --base-url.
        """
        if self.backend not in ("embedded", "openai"):
            raise LLMError(f"Unknown --llm backend {self.backend!r}; use 'embedded' or 'openai'.")
        if self.backend == "openai" and not self.api_key and not self.base_url:
            raise LLMError("--llm openai needs OPENAI_API_KEY in the environment (or --base-url for a local server).")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url, "timeout": self.timeout,
                "max_retries": self.max_retries, "max_backoff": self.max_backoff,
                "deadline": self.deadline, "rpm": self.rpm, "tpm": self.tpm}

    def client_options(self, timeout: float, max_retries: int, deadline: float | None = None) -> dict[str, Any]:
        """Keyword arguments of the LLM client: these settings, else the backend's defaults given here."""
        opts: dict[str, Any] = {"timeout": self.timeout or timeout,
                                "max_retries": max_retries if self.max_retries is None else self.max_retries,
                                "deadline": self.deadline or deadline}
        if self.rpm or self.tpm:
            opts["rate"] = RateLimiter(self.rpm, self.tpm)
        if self.max_backoff is not None:
            opts["max_backoff"] = self.max_backoff
            opts["backoff"] = min(LLM.backoff, self.max_backoff)
        return opts


@contextlib.contextmanager
def open_llm(settings: LLMSettings, log_dir: Path) -> Iterator[LLM]:
    """Yield the build's LLM client (the teacher's, and the planner's when the LLM plans); stops the embedded
    server on exit.

    Raises:
        LLMError: unknown backend, missing key, unreachable endpoint, missing embedded weights.
    """
    cache = ResponseCache(p2m_home() / "llm_cache.sqlite")
    try:
        if settings.backend == "embedded":
            from p2m_engine.llm.embedded import EMBEDDED_MODEL, PACKAGED, LlamaServer, embedded_model_path

            if settings.model and settings.model.endswith(".gguf"):
                path = Path(settings.model)
            else:  # a packaged model by name, the default when none is given
                path = embedded_model_path(settings.model or EMBEDDED_MODEL)
            if not path.is_file():
                raise LLMError(f"No GGUF model file at {path}.")
            alias = next((m.name for m in PACKAGED.values() if m.file == path.name), path.stem)
            log_dir.mkdir(parents=True, exist_ok=True)
            with LlamaServer(path, alias=alias, n_ctx=settings.n_ctx, log_path=log_dir / "llm-server.log") as server:
                # One local server decodes one request at a time: a client-side timeout would only queue a
                # retry behind the abandoned request, so wait long and retry once.
                # The port changes every run: the cache knows this server by its model file.
                llm = LLM(server.base_url, alias, cache=cache, endpoint=f"embedded:{path.name}", weights=path,
                          **settings.client_options(900, 1))
                yield llm
        elif settings.backend == "openai":
            if not settings.api_key and not settings.base_url:
                raise LLMError("--llm openai needs OPENAI_API_KEY in the environment (or --base-url for a local server).")
            model = settings.model or DEFAULT_OPENAI_MODEL
            from p2m_engine.llm.pricing import parse_prices

            llm = LLM(settings.base_url, model, api_key=settings.api_key or "unused", cache=cache,
                      endpoint=settings.cache_endpoint,
                      prices=parse_prices(os.environ.get("P2M_PRICES", "")),
                      **settings.client_options(120, 4, API_DEADLINE))
            llm.check()
            yield llm
        else:
            raise LLMError(f"Unknown --llm backend {settings.backend!r}; use 'embedded' or 'openai'.")
    finally:
        cache.close()
