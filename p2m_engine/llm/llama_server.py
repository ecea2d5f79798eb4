"""Run llama-cpp-python's OpenAI-compatible server with its log-probability path made cheap:
`python -m p2m_engine.llm.llama_server ARGS...` (the arguments of `python -m llama_cpp.server`).

Label scoring (p2m_engine.data.scoring) asks for one answer token and its 20 most likely alternatives. For that,
llama-cpp-python 0.3.36 computes the log-softmax of every prompt token's logits (a few hundred rows of the
152k-token vocabulary) and then sorts all 152k log-probabilities of the answer token in Python, to keep 20.
Measured on the embedded 0.5B teacher (trec prompts, 2 cores): 1.06 s a score, of which the decode is 0.38 s,
the log-softmax 0.31 s and the sort 0.32 s. Here the log-softmax is computed only for the rows the library
slices out (the answer's), and the sort keeps only the largest `TOP` entries: 0.44 s a score, the same
log-probabilities (compared token for token).

Both changes apply only to the pinned version they were read from; any other version runs unchanged.
"""

from __future__ import annotations

import heapq
import runpy
import sys
from typing import Any, Callable, Iterable

import numpy as np

# The version whose logprob code was read: its three `sorted(zip(logprobs, range(n)), reverse=True)` calls keep
# only `[:logprobs]`, and its one two-dimensional `logits_to_logprobs` call is sliced before use.
PATCHED_VERSION = "0.3.36"
# Entries a descending sort keeps (more than any `top_logprobs`: OpenAI allows at most 20).
TOP = 100


class LogprobRows:
    """The log-probabilities of a (tokens, vocab) logit matrix, computed for the rows that are sliced out."""

    def __init__(self, logits: np.ndarray, log_softmax: Callable[[np.ndarray], np.ndarray]) -> None:
        self.logits = logits
        self.log_softmax = log_softmax

    def __getitem__(self, rows: Any) -> list[Any]:
        # Python floats: the caller compares them one by one, and float comparisons are faster than numpy scalars'.
        return self.log_softmax(self.logits[rows]).tolist()

    def __len__(self) -> int:
        return len(self.logits)


def top_sorted(iterable: Iterable[Any], *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> list[Any]:
    """`sorted`, except that a descending sort without a key returns only its `TOP` first entries."""
    if reverse and key is None:
        return heapq.nlargest(TOP, iterable)
    return sorted(iterable, key=key, reverse=reverse)


def patch(module: Any) -> bool:
    """Apply both changes to llama-cpp-python's `llama` module; False (and no change) for another version."""
    import llama_cpp

    if getattr(llama_cpp, "__version__", None) != PATCHED_VERSION:
        return False
    original = module.Llama.logits_to_logprobs

    def logits_to_logprobs(logits: Any, axis: int = -1) -> Any:
        if isinstance(logits, np.ndarray) and logits.ndim == 2 and axis == -1:
            return LogprobRows(logits, original)
        return original(logits, axis)

    module.Llama.logits_to_logprobs = staticmethod(logits_to_logprobs)
    module.sorted = top_sorted  # the module's own name lookup; `sorted` elsewhere is untouched
    return True


def main() -> None:
    from llama_cpp import llama

    patch(llama)
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
