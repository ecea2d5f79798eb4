"""The embedded server's cheaper log-probability path returns what llama-cpp-python's own code returns."""

from __future__ import annotations

import types

import numpy as np
import pytest

from p2m_engine.llm import llama_server


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def fake_llama_module() -> types.SimpleNamespace:
    class Llama:
        logits_to_logprobs = staticmethod(log_softmax)

    return types.SimpleNamespace(Llama=Llama)


def test_the_rows_sliced_out_hold_the_log_softmax_of_those_rows_only() -> None:
    logits = np.random.default_rng(0).normal(size=(7, 50)).astype(np.float32)
    computed: list[int] = []

    def counted(x: np.ndarray) -> np.ndarray:
        computed.append(len(x))
        return log_softmax(x)

    rows = llama_server.LogprobRows(logits, counted)
    assert len(rows) == 7
    assert np.allclose(np.array(rows[5:]), log_softmax(logits)[5:], atol=1e-6)
    assert computed == [2]  # not the 7 rows of the whole prompt


def test_a_descending_sort_keeps_the_largest_entries_in_order() -> None:
    row = np.random.default_rng(1).normal(size=5000).tolist()
    pairs = list(zip(row, range(len(row))))
    top = llama_server.top_sorted(iter(pairs), reverse=True)
    assert len(top) == llama_server.TOP
    assert top[:20] == sorted(pairs, reverse=True)[:20]
    assert llama_server.top_sorted([3, 1, 2]) == [1, 2, 3]  # any other sort is the builtin one
    assert llama_server.top_sorted(["bb", "a"], key=len, reverse=True) == ["bb", "a"]


def test_the_patched_module_gives_the_same_top_logprobs(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "__version__", llama_server.PATCHED_VERSION, raising=False)
    module = fake_llama_module()
    assert llama_server.patch(module)
    logits = np.random.default_rng(2).normal(size=(30, 400)).astype(np.float32)
    offset = 29  # the library slices off the prompt's rows
    answer = module.Llama.logits_to_logprobs(logits)[offset:][0]
    expected = log_softmax(logits)[offset]
    ours = module.sorted(zip(answer, range(len(answer))), reverse=True)[:20]
    theirs = sorted(zip(expected.tolist(), range(len(expected))), reverse=True)[:20]
    assert [i for _, i in ours] == [i for _, i in theirs]
    assert np.allclose([v for v, _ in ours], [v for v, _ in theirs], atol=1e-6)
    assert np.allclose(module.Llama.logits_to_logprobs(logits[0]), log_softmax(logits[0]))  # one row: unchanged


def test_another_llama_cpp_version_runs_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "__version__", "0.0.1", raising=False)
    module = fake_llama_module()
    assert not llama_server.patch(module)
    assert module.Llama.logits_to_logprobs is log_softmax
    assert not hasattr(module, "sorted")
