"""Synthetic generation with a scripted LLM: label conditioning, filters, append-only resume, stopping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2m_engine.eval.analysis import FailureReport
from p2m_engine.errors import LLMError, UnsupportedTaskError
from p2m_engine.data.synth import Filters, SynthConfig, generate_labelled_examples, jaccard, normalize, shingles
from p2m_engine.types import Example, TaskSpec
from tests.fakes import FakeLLM

SPEC = TaskSpec("Is this SMS spam or ham?", (Example("WIN cash now!!", "spam"), Example("see you at 5", "ham")),
                "classification", ("spam", "ham"))


def _label_of(messages: list[dict[str, Any]]) -> str:
    text = messages[-1]["content"]
    return "spam" if 'label is "spam"' in text else "ham"


def counting_llm() -> FakeLLM:
    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        label = _label_of(messages)
        return {f"input_{k + 1}": f"{label} message number {i}-{k}" for k in range(3)}

    return FakeLLM(answer)


def test_generates_each_label_to_target_and_appends_provenance(tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    llm = counting_llm()
    res = generate_labelled_examples(SPEC, llm, out, SynthConfig(per_label=6, batch_size=3))  # type: ignore[arg-type]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert res.per_label == {"spam": 6, "ham": 6} and res.count == 12 == len(rows)
    assert all(r["input"].startswith(r["output"]) for r in rows)  # label-conditioned prompts
    assert {"model", "temperature", "batch", "template", "source"} <= set(rows[0])
    temps = [r["temperature"] for r in rows]
    assert temps[0] < temps[-1]  # annealed upward as data accumulates
    assert res.llm_calls == llm.usage.calls == 4
    # The schema asks for exactly batch_size named fields, each length-capped.
    schema = llm.requests[0]["schema"]
    assert schema["required"] == ["input_1", "input_2", "input_3"]
    assert all(p["maxLength"] == 300 for p in schema["properties"].values())


def test_answer_fields_are_read_in_order_and_cut_to_the_batch() -> None:
    from p2m_engine.data.synth import _inputs

    assert _inputs({"input_10": "j", "input_2": "b", "input_1": "a", "other": "x"}) == ["a", "b", "j"]
    assert _inputs({"inputs": ["a", 3, "b"]}) == ["a", "b"]


def test_resume_continues_from_rows_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    generate_labelled_examples(SPEC, counting_llm(), out, SynthConfig(per_label=3, batch_size=3))  # type: ignore[arg-type]
    llm = counting_llm()
    res = generate_labelled_examples(SPEC, llm, out, SynthConfig(per_label=3, batch_size=3))  # type: ignore[arg-type]
    assert llm.usage.calls == 0 and res.count == 6
    assert len(out.read_text().splitlines()) == 6


def test_stops_a_label_that_yields_nothing(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if _label_of(messages) == "spam":
            return {"inputs": ["WIN cash now!!"]}  # a copy of the demo: always filtered as a leak
        return {"inputs": [f"ham {i}"]}

    llm = FakeLLM(answer)
    res = generate_labelled_examples(SPEC, llm, tmp_path / "g.jsonl", SynthConfig(per_label=2, batch_size=1, max_failed_batches=3))  # type: ignore[arg-type]
    assert res.per_label == {"spam": 0, "ham": 2} and res.stopped_labels == ("spam",) and "spam" in (res.stop_reason or "")
    assert res.dropped["leak"] == 3
    spam_temps = [r["temperature"] for r in llm.requests if 'label is "spam"' in r["messages"][-1]["content"]]
    assert spam_temps == sorted(spam_temps) and spam_temps[-1] >= spam_temps[0] + 0.5  # hotter after each failure
    assert llm.usage.calls == 5  # 3 failed spam batches + 2 ham batches, then it stops


def test_excluded_test_inputs_never_become_training_data(tmp_path: Path) -> None:
    llm = FakeLLM(lambda m, n, i: {"inputs": ["Held out text!", f"fresh {i}"]})
    spec = TaskSpec(SPEC.instruction, SPEC.examples, "classification", ("spam", "ham"))
    generate_labelled_examples(spec, llm, tmp_path / "g.jsonl", SynthConfig(per_label=1, batch_size=2), exclude=["held out TEXT"])  # type: ignore[arg-type]
    assert "Held out" not in (tmp_path / "g.jsonl").read_text()


def test_generation_task_is_refused(tmp_path: Path) -> None:
    spec = TaskSpec("Translate", (Example("a", "b"),), "generation")
    with pytest.raises(UnsupportedTaskError):
        generate_labelled_examples(spec, counting_llm(), tmp_path / "g.jsonl")  # type: ignore[arg-type]


def test_service_failure_is_raised_not_swallowed(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        raise LLMError("The LLM service failed after 4 retries: APIConnectionError.")

    with pytest.raises(LLMError, match="service failed"):
        generate_labelled_examples(SPEC, FakeLLM(answer), tmp_path / "g.jsonl", SynthConfig(per_label=1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "label", "reason"),
    [
        ("a fine new message", "spam", None),
        ("a fine new message", "other", "label_not_in_set"),
        ("", "spam", "too_short"),
        ("x" * 400, "spam", "too_long"),
        ("I'm sorry, but I can't assist with that request.", "spam", "refusal"),
        ("win CASH now", "spam", "leak"),
    ],
)
def test_filters_drop_bad_and_keep_good(text: str, label: str, reason: str | None) -> None:
    f = Filters(SynthConfig(max_chars=300), ("spam", "ham"), {normalize("WIN cash now!!")})
    assert f.check(text, label) == reason


def test_near_copies_are_dropped_and_distinct_texts_kept() -> None:
    demo = "Ur cash-balance is currently 500 pounds - to maximize ur cash-in now send CASH to 86688 only"
    f = Filters(SynthConfig(), ("spam", "ham"), {normalize(demo)}, [demo])
    assert f.check(demo.replace("500", "700"), "spam") == "near_copy_of_demo"
    assert f.accept("Congratulations! You won a cruise to the Bahamas, call 0800 123 now to claim", "spam")
    assert not f.accept("Congratulations! You won a cruise to the Bahamas, call 0800 999 now to claim", "spam")
    assert f.dropped["near_duplicate"] == 1
    assert f.accept("Your parcel is held at the depot, pay the 2 pound fee at this link", "spam")


def test_every_label_gets_a_bounded_number_of_calls(tmp_path: Path) -> None:
    # Each batch yields exactly one new example, so the failure counter never trips; the cap still ends it.
    llm = FakeLLM(lambda m, n, i: {"input_1": f"entirely new text number {i} with words {i * 3} and {i * 7}"})
    cfg = SynthConfig(per_label=10, batch_size=5, max_batches_factor=1, max_failed_batches=1)
    res = generate_labelled_examples(SPEC, llm, tmp_path / "g.jsonl", cfg)  # type: ignore[arg-type]
    assert llm.usage.calls == 2 * (1 * 2 + 1)  # per label: factor * ceil(10 / 5) + max_failed_batches
    assert res.stopped_labels == ("spam", "ham") and res.per_label == {"spam": 3, "ham": 3}


def test_duplicate_filter_keeps_first_drops_second() -> None:
    f = Filters(SynthConfig(), ("spam", "ham"), set())
    assert f.accept("Hello there, friend", "ham")
    assert not f.accept("hello there friend!", "ham")
    assert f.dropped["duplicate"] == 1


def _report(tmp_path: Path) -> FailureReport:
    from p2m_engine.eval.analysis import analyze_failures

    rows = [("Claim your prize, reply YES", "spam", "ham", 0.9), ("Free entry in a weekly draw", "spam", "ham", 0.7),
            ("Txt STOP to end your 150p plan", "spam", "spam", 0.8), ("lunch at noon?", "ham", "ham", 0.9),
            ("your bill is ready to view online", "ham", "spam", 0.6), ("call me later", "ham", "ham", 0.9)]
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps({"input": i, "gold": g, "prediction": p, "probability": q}) + "\n"
                            for i, g, p, q in rows))
    return analyze_failures(path, ("spam", "ham"))


def test_targeted_generation_shows_the_confusions_and_appends_rows(tmp_path: Path) -> None:
    from p2m_engine.data.synth import generate_targeted_examples

    out = tmp_path / "gen.jsonl"
    generate_labelled_examples(SPEC, counting_llm(), out, SynthConfig(per_label=3, batch_size=3))  # type: ignore[arg-type]
    before = out.read_text().splitlines()
    report = _report(tmp_path)
    assert report.weak_labels == ("spam",)  # recall 1/3 against ham's 2/3
    llm = counting_llm()
    res = generate_targeted_examples(SPEC, llm, out, report, SynthConfig(per_label=3, batch_size=3), extra=4)  # type: ignore[arg-type]
    # Only the weak label got new examples, 4 beyond the 3 it had; ham is untouched.
    assert res.per_label == {"spam": 7, "ham": 3} and res.count == 10
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert out.read_text().splitlines()[: len(before)] == before  # appended, not rewritten
    new = rows[len(before):]
    assert len(new) == 4 and {r["output"] for r in new} == {"spam"}
    assert all(r["targeted"] is True and r["template"] == "generate_targeted_examples" for r in new)
    assert not any("targeted" in r for r in rows[: len(before)])
    # The teacher saw the confusion and the student's errors for that label.
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert 'The student model confuses "spam" with "ham"' in prompt
    assert "Claim your prize, reply YES" in prompt and "Free entry in a weekly draw" in prompt  # missed spam
    assert "your bill is ready to view online" in prompt  # a ham it wrongly called spam
    assert all('label is "spam"' in r["messages"][-1]["content"] for r in llm.requests)


def test_targeted_generation_never_copies_the_errors_it_shows(tmp_path: Path) -> None:
    from p2m_engine.data.synth import generate_targeted_examples

    # The teacher copies the error examples back: all of them are dropped as leaks of validation data.
    llm = FakeLLM(lambda m, n, i: {"inputs": ["Claim your prize, reply YES!", "your bill is ready to view online",
                                              f"brand new offer number {i}"]})
    out = tmp_path / "gen.jsonl"
    res = generate_targeted_examples(SPEC, llm, out, _report(tmp_path), SynthConfig(per_label=2, batch_size=3), extra=3)  # type: ignore[arg-type]
    texts = [json.loads(line)["input"] for line in out.read_text().splitlines()]
    assert texts and all(t.startswith("brand new offer") for t in texts)
    assert res.dropped["leak"] >= 2


def test_no_weak_label_means_no_targeted_call(tmp_path: Path) -> None:
    from p2m_engine.eval.analysis import analyze_failures
    from p2m_engine.data.synth import generate_targeted_examples

    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps({"input": "a", "gold": "spam", "prediction": "spam"}) + "\n"
                    + json.dumps({"input": "b", "gold": "ham", "prediction": "ham"}) + "\n")
    llm = counting_llm()
    res = generate_targeted_examples(SPEC, llm, tmp_path / "g.jsonl", analyze_failures(path, SPEC.labels))  # type: ignore[arg-type]
    assert llm.usage.calls == 0 and res.count == 0


class ConcurrentLLM(FakeLLM):
    """Answers from the prompt alone (never from call order), counts the calls in flight, and makes the first two
    calls meet at a barrier: they must be in flight together, or the test fails after a few seconds."""

    def __init__(self) -> None:
        import threading

        super().__init__(lambda m, n, i: {})
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.barrier = threading.Barrier(2, timeout=10)

    def call_tool(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any], *, temperature: float = 0.0,
                  max_tokens: int = 512, variant: int = 0, attempts: int = 3) -> dict[str, Any]:
        import hashlib
        import time

        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            first_two = len(self.requests) < 2
            self.requests.append({"messages": messages, "variant": variant})
            self.usage.calls += 1
        if first_two:
            self.barrier.wait()
        time.sleep(0.01)
        key = hashlib.sha1(f"{messages[-1]['content']}|{variant}|{temperature}".encode()).hexdigest()[:10]
        with self.lock:
            self.in_flight -= 1
        label = _label_of(messages)
        return {f"input_{k + 1}": f"{label} message {key} part {k}" for k in range(len(schema["properties"]))}


def test_batches_in_flight_together_give_the_same_data_every_time(tmp_path: Path) -> None:
    config = SynthConfig(per_label=8, batch_size=2, concurrency=4)
    runs = []
    for name in ("a.jsonl", "b.jsonl"):
        llm = ConcurrentLLM()
        res = generate_labelled_examples(SPEC, llm, tmp_path / name, config)  # type: ignore[arg-type]
        assert res.per_label == {"spam": 8, "ham": 8} and llm.most_in_flight >= 2
        runs.append([json.loads(line) for line in (tmp_path / name).read_text().splitlines()])
    # Absorbed in the order asked, whatever order the answers came back in: the same rows, in the same order.
    assert runs[0] == runs[1]
    assert len({r["batch"] for r in runs[0]}) == 8  # every batch has its id: a crash loses only the batches in flight
    # One at a time, nothing overlaps (and the first two calls would wait at the barrier: none is made to).
    llm = ConcurrentLLM()
    llm.barrier = type(llm.barrier)(1)
    generate_labelled_examples(SPEC, llm, tmp_path / "c.jsonl", SynthConfig(per_label=8, batch_size=2))  # type: ignore[arg-type]
    assert llm.most_in_flight == 1


def test_a_slow_answer_does_not_hold_back_the_other_slots(tmp_path: Path) -> None:
    """With two slots and the second call slow, the next batches go out as each earlier one is absorbed (no round
    waits for its slowest answer), and the rows are still those of the same build with no slow call."""
    import threading
    import time

    class SlowSecond(ConcurrentLLM):
        def __init__(self, slow: bool) -> None:
            super().__init__()
            self.barrier = threading.Barrier(1)
            self.slow = slow
            self.during: list[int] = []  # calls made while the slow one was out

        def call_tool(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any], **kw: Any) -> dict[str, Any]:
            with self.lock:
                second = len(self.requests) == 1
            if second and self.slow:
                before = len(self.requests)
                answer = super().call_tool(messages, name, schema, **kw)
                time.sleep(0.5)
                self.during.append(len(self.requests) - before - 1)
                return answer
            return super().call_tool(messages, name, schema, **kw)

    config = SynthConfig(per_label=6, batch_size=1, concurrency=2)
    slow, fast = SlowSecond(slow=True), SlowSecond(slow=False)
    generate_labelled_examples(SPEC, slow, tmp_path / "slow.jsonl", config)  # type: ignore[arg-type]
    generate_labelled_examples(SPEC, fast, tmp_path / "fast.jsonl", config)  # type: ignore[arg-type]
    # Batch 1 came back and was absorbed, so batch 3 went out while batch 2 was still slow; batch 4 waits for batch 2
    # (answers are absorbed in order), so exactly one.
    assert slow.during == [1]
    assert (tmp_path / "slow.jsonl").read_text() == (tmp_path / "fast.jsonl").read_text()


def test_the_near_duplicate_index_decides_as_every_pair_would() -> None:
    import random

    rng = random.Random(0)
    words = ["win", "cash", "now", "call", "free", "prize", "meet", "at", "five", "see", "you", "later"]
    bases = [[rng.choice(words) for _ in range(10)] for _ in range(40)]
    texts = []
    for _ in range(400):  # a base with one or two words changed: many near duplicates, some not
        text = list(rng.choice(bases))
        for _ in range(rng.randint(1, 2)):
            text[rng.randrange(len(text))] = rng.choice(words)
        texts.append(" ".join(text))
    indexed = Filters(SynthConfig(), ("spam", "ham"), set())
    for text in texts:
        sh = shingles(text)
        pairwise = any(jaccard(sh, other) >= indexed.config.near_duplicate for other in indexed.kept)
        assert indexed._near_kept(sh) == pairwise, text
        indexed.accept(text, "spam")
    assert 10 < len(indexed.kept) < 400 and indexed.dropped["near_duplicate"] > 0


def test_the_planners_guidance_reaches_every_teacher_prompt(tmp_path: Path) -> None:
    llm = counting_llm()
    generate_labelled_examples(SPEC, llm, tmp_path / "g.jsonl", SynthConfig(per_label=3, batch_size=3),  # type: ignore[arg-type]
                               guidance="short reminders about bills")
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    assert prompts and all(p.rstrip().endswith("Guidance: short reminders about bills") for p in prompts)
    plain = counting_llm()
    generate_labelled_examples(SPEC, plain, tmp_path / "h.jsonl", SynthConfig(per_label=3, batch_size=3))  # type: ignore[arg-type]
    assert not any("Guidance" in r["messages"][-1]["content"] for r in plain.requests)


def test_only_the_labels_asked_for_get_new_examples(tmp_path: Path) -> None:
    llm = counting_llm()
    res = generate_labelled_examples(SPEC, llm, tmp_path / "g.jsonl", SynthConfig(per_label=3, batch_size=3),  # type: ignore[arg-type]
                                     labels=("spam",))
    rows = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert res.per_label == {"spam": 3, "ham": 0} and {r["output"] for r in rows} == {"spam"}
    assert all('label is "spam"' in r["messages"][-1]["content"] for r in llm.requests)
