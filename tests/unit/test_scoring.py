"""Label scoring by the teacher's first-token log-probabilities, with contextual calibration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from p2m_engine.errors import LLMError
from p2m_engine.llm import LLM
from p2m_engine.data.scoring import CONTENT_FREE, calibrate, label_probs, score_labels
from p2m_engine.types import Example, TaskSpec
from tests.openai_stub import OpenAIStub

SPEC = TaskSpec("Is this review positive or negative?", (Example("great film", "positive"),), "classification",
                ("positive", "negative"))


class BiasedScorer:
    """A tiny fake teacher with known log-probabilities: it leans to "positive" whatever the input (the prompt's
    bias), and its content signal is weaker than that bias: a "bad" review still gets positive first."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def first_token_logprobs(self, messages: list[dict[str, Any]], *, top: int = 20, name: str = "score") -> dict[str, float]:
        text = messages[-1]["content"].rsplit("input:", 1)[-1]
        self.prompts.append(messages[-1]["content"])
        pos = 0.8 if "good" in text else (0.55 if "bad" in text else 0.75)
        # Case and space variants of one label are separate tokens; "P" starts only "positive".
        return {"Positive": math.log(pos * 0.6), " positive": math.log(pos * 0.3), "P": math.log(pos * 0.1),
                "negative": math.log(1 - pos)}


def test_label_probs_sums_case_and_space_variants_and_shares_common_prefixes() -> None:
    probs = label_probs({"Pos": math.log(0.5), " positive": math.log(0.2), "neg": math.log(0.3)}, ("positive", "negative"))
    assert probs == pytest.approx([0.7, 0.3], abs=1e-3)
    # "S" starts both labels: its mass is split; "Sports" starts one; an unrelated token counts for none.
    shared = label_probs({"S": math.log(0.4), "Sports": math.log(0.4), "The": math.log(0.2)}, ("Sports", "Sci/Tech"))
    assert shared == pytest.approx([0.75, 0.25], abs=1e-3)


def test_calibration_divides_by_the_content_free_answer() -> None:
    out = calibrate(np.array([[0.6, 0.4]]), np.array([0.75, 0.25]))
    assert out == pytest.approx(np.array([[1 / 3, 2 / 3]]))


def test_calibrated_scores_undo_the_prompts_bias() -> None:
    teacher = BiasedScorer()
    scores = score_labels(SPEC, teacher, ["a good film", "a bad film"])  # type: ignore[arg-type]
    assert list(scores.raw.argmax(1)) == [0, 0]  # raw: everything positive
    assert list(scores.probs.argmax(1)) == [0, 1]  # calibrated: the bad review is negative
    assert scores.bias[0] == pytest.approx(0.75, abs=1e-3)
    assert len(teacher.prompts) == len(CONTENT_FREE) + 2
    assert all("Possible answers: positive, negative" in p and "great film" in p for p in teacher.prompts)


def test_scores_in_flight_together_come_back_in_the_texts_order() -> None:
    import threading
    import time

    class SlowFirst(BiasedScorer):
        """The first text's answer is the slowest: with requests in flight together it finishes last."""

        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()
            self.in_flight = self.most = 0

        def first_token_logprobs(self, messages: list[dict[str, Any]], *, top: int = 20, name: str = "score") -> dict[str, float]:
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            time.sleep(0.3 if "first good" in messages[-1]["content"] else 0.02)
            with self.lock:
                self.in_flight -= 1
            return super().first_token_logprobs(messages, top=top, name=name)

    texts = ["first good film", "a bad film", "a bad plot", "a good cast"]
    seen: list[tuple[int, int]] = []
    one = score_labels(SPEC, BiasedScorer(), texts)  # type: ignore[arg-type]
    teacher = SlowFirst()
    many = score_labels(SPEC, teacher, texts, lambda done, total: seen.append((done, total)), concurrency=4)  # type: ignore[arg-type]
    assert teacher.most > 1 and np.allclose(one.probs, many.probs) and list(many.probs.argmax(1)) == [0, 1, 1, 0]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_llm_reads_first_token_logprobs_from_a_real_server_and_caches_them(tmp_path) -> None:
    from p2m_engine.llm.cache import ResponseCache

    answer = {"neg": -0.2, "Pos": -1.9, "The": -3.0}
    with OpenAIStub([("logprobs", answer), ("content", "no logprobs here")]) as stub:
        llm = LLM(base_url=stub.base_url, model="m", api_key="test", cache=ResponseCache(tmp_path / "c.sqlite"))
        messages = [{"role": "user", "content": "x"}]
        assert llm.first_token_logprobs(messages, top=3) == pytest.approx(answer)
        assert llm.first_token_logprobs(messages, top=3) == pytest.approx(answer)  # cached: no second request
        request = stub.chat_requests[0]
        assert request["logprobs"] is True and request["top_logprobs"] == 3 and request["max_tokens"] == 1
        assert len(stub.chat_requests) == 1 and llm.usage.cached == 1
        with pytest.raises(LLMError, match="no log-probabilities"):
            llm.first_token_logprobs([{"role": "user", "content": "y"}])
