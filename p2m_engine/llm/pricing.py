"""What LLM calls cost: a price table for known API models, zero for local servers, and a build's estimate.

Prices are USD per million tokens (input, output) as the providers list them; they change, so the table can be
extended or overridden with P2M_PRICES='model=in/out,model=in/out' (read at the CLI edge and passed in).
A model that is neither local nor in the table has an unknown cost (None), reported as such, never as zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from p2m_engine.errors import P2MError
from p2m_engine.types import generation_total

# USD per 1M tokens: (input, output).
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def parse_prices(text: str) -> dict[str, tuple[float, float]]:
    """Parse 'model=in/out,...' (USD per 1M tokens).

    Raises:
        P2MError: an entry is not model=number/number.
    """
    out: dict[str, tuple[float, float]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        price_in, _, price_out = value.partition("/")
        try:
            out[name.strip()] = (float(price_in), float(price_out))
        except ValueError:
            raise P2MError(f"Invalid price {part!r}: use model=input/output in USD per 1M tokens.") from None
    return out


def is_local(base_url: str | None) -> bool:
    """A server on this machine (the embedded llama.cpp, a local vLLM/Ollama): its calls cost nothing."""
    return bool(base_url) and (urlparse(str(base_url)).hostname or "") in _LOCAL_HOSTS


def _lookup(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    if model in prices:
        return prices[model]
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs: the longest matching prefix.
    family = max((m for m in prices if model.startswith(m + "-")), key=len, default=None)
    return prices[family] if family else None


def price(model: str, base_url: str | None, table: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens of `model` at `base_url`, or None when unknown.

    The user's table (P2M_PRICES) is taken at its word for any endpoint; the built-in one for remote endpoints.
    A local server costs nothing, unless the model bears a priced API name: that server may well be a proxy
    to the paid API, so its cost is unknown (None), never a made-up $0.
    """
    own = _lookup(model, table or {})
    if own is not None:
        return own
    listed = _lookup(model, PRICES)
    if is_local(base_url):
        return (0.0, 0.0) if listed is None else None
    return listed


def cost(model: str, base_url: str | None, prompt_tokens: int, completion_tokens: int,
         table: dict[str, tuple[float, float]] | None = None) -> float | None:
    """USD for that many tokens, or None when the model's price is unknown."""
    p = price(model, base_url, table)
    if p is None:
        return None
    return round((prompt_tokens * p[0] + completion_tokens * p[1]) / 1e6, 6)


@dataclass(frozen=True)
class Estimate:
    """An upper estimate of a build's LLM use, shown before an unattended build starts."""

    calls: int
    tokens: int
    usd: float | None

    def describe(self) -> str:
        money = ("unknown cost (no known price for this model at this endpoint)" if self.usd is None
                 else f"about ${self.usd:.2f}")
        return f"at most about {self.calls} LLM calls, {self.tokens:,} tokens, {money}"


# Measured on p2m's own prompts: a generation call is about 450 prompt and 250 completion tokens.
PROMPT_TOKENS_PER_CALL = 450
COMPLETION_TOKENS_PER_CALL = 250


# The teacher writing inputs (p2m_engine.data.written): inputs asked for per call, and at most this many times the
# calls its target needs.
WRITE_BATCH, WRITE_BATCHES_FACTOR = 8, 4


def estimate(n_labels: int, per_label: int, batch_size: int, iterations: int, max_llm_calls: int | None,
             model: str, base_url: str | None, table: dict[str, tuple[float, float]] | None = None,
             labelled: int = 0, n_demos: int = 0, written: int = 0) -> Estimate:
    """The most a build may spend: generation with its retry allowance, targeted rounds, planner and rerank calls,
    and the teacher's label scores of `labelled` hub texts (plus its test on each demonstration, with the 3
    content-free calibration inputs each time), and the batches of `written` inputs the teacher writes for them.

    A task without labels generates pairs: `generation_total(per_label)` of them (5 x per_label), each input
    answered by up to 3 votes; the hub inputs the teacher answers first take the place of some, but are counted
    in full beside them.
    """
    if n_labels:
        generation = n_labels * (3 * -(-per_label // batch_size) + 4)  # max_batches_factor=3, max_failed_batches=4
        targeted = (iterations - 1) * n_labels * 3
    else:
        pairs = generation_total(per_label)
        generation = pairs * 3 + 2 * -(-pairs // batch_size)
        targeted = 0
    if n_labels:
        scoring = labelled + 3 + 4 * n_demos + WRITE_BATCHES_FACTOR * -(-written // WRITE_BATCH) if labelled else 0
    else:  # hub inputs answered (label_texts), at most as many as the pairs: 2 tried per pair, each an answer
        # and a call for its other fields
        scoring = 2 * min(labelled, generation_total(per_label)) * 2
    calls = generation + targeted + scoring + 12 + 3  # planner decisions, rerank votes
    if max_llm_calls is not None:
        calls = min(calls, max_llm_calls + 15)
    p_tokens, c_tokens = calls * PROMPT_TOKENS_PER_CALL, calls * COMPLETION_TOKENS_PER_CALL
    return Estimate(calls, p_tokens + c_tokens, cost(model, base_url, p_tokens, c_tokens, table))
