"""Pair generation with a scripted LLM: self-consistency votes, spans, filters, append-only resume, bounded calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from p2m_engine.errors import LLMError, UnparseableAnswerError, UnsupportedTaskError
from p2m_engine.data.pairs import PairsConfig, as_span, generate_pairs, majority, vote_key
from p2m_engine.types import Example, TaskSpec
from tests.fakes import FakeLLM

GEN = TaskSpec("Rewrite the sentence in the past tense.",
               (Example("I walk to the old harbour every morning", "I walked to the old harbour every morning"),
                Example("She reads three books in the garden", "She read three books in the garden")),
               "generation")
QA = TaskSpec("Answer the question by copying a span of the context.",
              (Example("Question: Who won? Context: The Blue team won the final in 1990.", "The Blue team"),),
              "extractive-qa")


def _asked_input(messages: list[dict[str, Any]]) -> str:
    """The input an answer_input prompt asks about (its last `input:` line)."""
    return re.findall(r"^input: (.*)$", messages[-1]["content"], re.MULTILINE)[-1]


def scripted(inputs: Callable[[int], list[str]], output: Callable[[str, int], str]) -> FakeLLM:
    """A fake teacher: `inputs(batch_call)` for write_inputs, `output(input, vote_call)` for write_output."""
    count = {"write_inputs": 0}

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs":
            count["write_inputs"] += 1
            reply: dict[str, Any] = {}
            for k, x in enumerate(inputs(count["write_inputs"])):
                reply[f"input_{k + 1}"] = x
                # Field by field too, as a QA task's schema asks (input_1_context, input_1_question).
                if m := re.fullmatch(r"Question: (.*?) Context: (.*)", x):
                    reply |= {f"input_{k + 1}_question": m.group(1), f"input_{k + 1}_context": m.group(2)}
            return reply
        assert name == "write_output"
        return {"output": output(_asked_input(messages), i)}

    return FakeLLM(answer)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _numbered(batch: int) -> list[str]:
    return [f"the fox number {batch} {k} jumps over fence {batch * 10 + k} today" for k in range(3)]


def test_majority_picks_most_common_and_a_split_vote_drops() -> None:
    vote = majority(["SELECT a FROM t", "select a  from t", "SELECT b FROM t"], "generation", 3, 0.6)
    assert vote.output == "SELECT a FROM t" and vote.agreement == pytest.approx(0.667, abs=1e-3)
    split = majority(["a1", "b2", "c3"], "generation", 3, 0.6)
    assert split.output is None and split.reason == "no_majority"
    tie = majority(["a1", "a1", "b2", "b2"], "generation", 4, 0.4)
    assert tie.output is None  # a tie for first place never wins
    assert majority([None, None, None], "extractive-qa", 3, 0.6).reason == "not_a_span"
    # Extractive answers compare under SQuAD normalisation; free text keeps punctuation.
    assert vote_key("The Blue team.", "extractive-qa") == vote_key("blue team", "extractive-qa")
    assert vote_key("f.close()", "generation") != vote_key("f.close", "generation")
    assert vote_key("SELECT name ,  age", "generation") == vote_key("select name, age", "generation")


def test_as_span_keeps_the_exact_substring() -> None:
    ctx = "Question: Who won? Context: The Blue team won the final in 1990."
    assert as_span("the blue team", ctx) == "The Blue team"
    assert as_span('"1990"', ctx) == "1990"
    assert as_span("the Red team", ctx) is None and as_span("  ", ctx) is None


def test_generates_pairs_by_majority_with_provenance(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    # Vote calls alternate: every input gets "past: X" twice in three samples, except inputs with "1 1" which split.
    def output(text: str, i: int) -> str:
        if " 1 1 " in text:
            return f"answer {i}"
        return f"past: {text}" if i % 3 else f"other {i}"

    llm = scripted(_numbered, output)
    res = generate_pairs(GEN, llm, out, PairsConfig(n=4, batch_size=3, votes=3))  # type: ignore[arg-type]
    rows = _rows(out)
    assert res.count == 4 == len(rows) and res.stop_reason is None and not res.stopped_labels
    assert all(r["output"] == f"past: {r['input']}" for r in rows)
    assert all(" 1 1 " not in r["input"] for r in rows)  # the split vote was dropped
    assert res.dropped["no_majority"] == 1
    assert {"model", "template", "temperature", "answer_temperature", "votes", "agreement", "batch"} <= set(rows[0])
    assert all(r["agreement"] >= 0.6 for r in rows)
    assert rows[0]["temperature"] < rows[-1]["temperature"]  # annealed upward as data accumulates
    assert res.llm_calls == llm.usage.calls
    schema = next(r["schema"] for r in llm.requests if r["name"] == "write_inputs")
    assert schema["required"] == ["input_1", "input_2", "input_3"]


def test_extractive_qa_keeps_spans_and_drops_the_rest(tmp_path: Path) -> None:
    def inputs(batch: int) -> list[str]:
        return [f"Question: Who came {batch}? Context: The Green club number {batch} arrived in town on day {batch}.",
                f"Question: What is it {batch}? Context: An owl named Bo{batch} sleeps quietly in a tall oak {batch}."]

    def output(text: str, i: int) -> str:
        return "the green CLUB" if "Green" in text else "a brown bear"  # the second is never a span

    out = tmp_path / "qa.jsonl"
    res = generate_pairs(QA, scripted(inputs, output), out, PairsConfig(n=2, votes=3))  # type: ignore[arg-type]
    rows = _rows(out)
    assert res.count == 2 and all(r["output"] == "The Green club" and r["output"] in r["input"] for r in rows)
    assert rows[0]["votes"] == ["the green CLUB", "the green CLUB"]  # what the teacher wrote, before the span fix
    assert res.dropped["not_a_span"] >= 1


def test_duplicates_and_leaks_are_dropped_and_a_good_one_kept(tmp_path: Path) -> None:
    held_out = "The quick brown dog sleeps under the wooden bridge near the river"

    def inputs(batch: int) -> list[str]:
        return [GEN.examples[0].input,                                     # a demo: leak
                held_out,                                                  # a held-out test input: leak
                "The quick brown dog sleeps under the wooden bridge near the river!",  # same after normalising
                "I walk to the old harbour every morning with my dog",     # a near copy of a demo
                "We cook pasta for the whole family on sunday",            # new: kept
                "we cook pasta for the whole family on Sunday.",           # duplicate of the one before
                "I'm sorry, but I cannot help with that request today"]    # refusal

    llm = scripted(inputs, lambda text, i: text.replace("cook", "cooked"))
    res = generate_pairs(GEN, llm, tmp_path / "g.jsonl", PairsConfig(n=1, batch_size=7, votes=3),  # type: ignore[arg-type]
                         exclude=[held_out])
    rows = _rows(tmp_path / "g.jsonl")
    assert [r["input"] for r in rows] == ["We cook pasta for the whole family on sunday"]
    assert rows[0]["output"] == "We cooked pasta for the whole family on sunday"
    assert res.dropped["leak"] == 3 and res.dropped["duplicate"] == 1 and res.dropped["refusal"] == 1
    assert res.dropped["near_copy_of_demo_or_test"] == 1


def test_inputs_sharing_a_long_context_are_not_near_copies(tmp_path: Path) -> None:
    schema = "Tables: singer(id, name, country, age), concert(id, name, year, stadium), stadium(id, name, capacity)"

    def inputs(batch: int) -> list[str]:
        questions = ["How many concerts were held in each year since the stadium opened?",
                     "List the names and ages of every singer from France sorted by age.",
                     "How many singers do we have?"]  # only differs from the demo in nothing: a copy
        return [f"{schema} Question: {q}" for q in questions]

    spec = TaskSpec("Write the SQL query.", (Example(f"{schema} Question: How many singers do we have?",
                                                      "SELECT count(*) FROM singer"),), "generation")
    res = generate_pairs(spec, scripted(inputs, lambda t, i: "SELECT 1"), tmp_path / "s.jsonl",  # type: ignore[arg-type]
                         PairsConfig(n=2, batch_size=3))
    assert res.count == 2 and res.dropped["leak"] == 1


def test_near_copy_rule_and_format_markers() -> None:
    from p2m_engine.data.pairs import InputFilters, format_markers

    demo = "[Posted: 2013-03-22] Evana Roth told CNN in August about the new plan"
    markers = format_markers([demo, "[Posted: 1998-01-02] Rain fell all week. Note: none"])
    assert markers == {"Posted:"}
    f = InputFilters(PairsConfig(), 500, set(), [demo], markers)
    assert f.check("[Posted: 2013-03-22] Evana Roth told CNN in August") == "near_copy_of_demo_or_test"  # cut short
    assert f.check("Evana Roth told CNN in September about the new plan") == "format_marker_missing"
    assert f.check("[Posted: 2001-05-05] The council met last Friday and will meet again next May") is None
    # Short texts with few word 3-grams, all new, are not copies of each other (e.g. unspaced Japanese).
    g = InputFilters(PairsConfig(), 500, set(), ["開いているファイル'f'を閉じる"])
    assert g.accept("リスト'a'を逆順に並べ替える") and g.accept("辞書'd'のキーを表示する")


def test_format_prefix_is_put_back_on_bare_inputs() -> None:
    from p2m_engine.data.pairs import format_markers, format_prefix, repair_format

    demos = ["[Posted: 2013-03-22] Rain fell in May.", "[Posted: 2013-03-22] Roth won in the Pro Bowl: twice."]
    prefix, markers = format_prefix(demos), format_markers(demos)
    assert prefix == "[Posted: 2013-03-22] " and markers == {"Posted:"}  # "Bowl:" mid-sentence is no marker
    assert repair_format("Snow came late.", prefix, markers) == "[Posted: 2013-03-22] Snow came late."
    assert repair_format("[Posted: 2001-01-01] Snow.", prefix, markers) == "[Posted: 2001-01-01] Snow."
    assert format_prefix(["Question: How many a?", "Question: How much b?"]) == "Question: "
    qa = frozenset({"Question:", "Context:"})
    assert repair_format("Who? Context: Bo ran.", "Question: ", qa) == "Question: Who? Context: Bo ran."
    assert format_prefix(["only one demo"]) == "" and format_prefix(["ab cd", "ab ce"]) == ""


def test_resume_counts_rows_on_disk_and_appends(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    same = lambda text, i: f"past: {text}"  # noqa: E731
    generate_pairs(GEN, scripted(_numbered, same), out, PairsConfig(n=3, batch_size=3))  # type: ignore[arg-type]
    first = out.read_text()
    llm = scripted(_numbered, same)
    res = generate_pairs(GEN, llm, out, PairsConfig(n=3, batch_size=3))  # type: ignore[arg-type]
    assert llm.usage.calls == 0 and res.count == 3 and out.read_text() == first
    # A bigger target continues after the rows on disk; the first rows stay as they were.
    llm = scripted(lambda b: _numbered(b + 50), same)
    res = generate_pairs(GEN, llm, out, PairsConfig(n=5, batch_size=3))  # type: ignore[arg-type]
    rows = _rows(out)
    assert res.count == 5 == len(rows) and out.read_text().startswith(first)
    assert len({r["input"] for r in rows}) == 5


def test_calls_are_bounded_when_the_llm_returns_garbage(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs" and i % 2:
            raise UnparseableAnswerError("The LLM gave no valid answer for write_inputs after 3 tries (garbage).")
        return {"nonsense": "???"} if name == "write_inputs" else {"output": ""}

    llm = FakeLLM(answer)
    res = generate_pairs(GEN, llm, tmp_path / "g.jsonl", PairsConfig(n=50, max_failed_batches=3))  # type: ignore[arg-type]
    assert res.count == 0 and "no new pair" in (res.stop_reason or "") and res.stopped_labels == ()
    assert llm.usage.calls == 3


def test_calls_are_bounded_when_every_vote_is_empty(tmp_path: Path) -> None:
    llm = scripted(_numbered, lambda text, i: "")
    res = generate_pairs(GEN, llm, tmp_path / "g.jsonl", PairsConfig(n=50, batch_size=3, max_failed_batches=2))  # type: ignore[arg-type]
    assert res.count == 0 and res.dropped["empty_output"] == 6
    # 2 input batches, each of 3 inputs; two empty votes already decide there is no majority of 3.
    assert llm.usage.calls == 2 + 6 * 2


def test_service_errors_are_raised_and_classification_is_refused(tmp_path: Path) -> None:
    def broken(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        raise LLMError("The LLM service failed after 1 retries: APIConnectionError.")

    with pytest.raises(LLMError):
        generate_pairs(GEN, FakeLLM(broken), tmp_path / "g.jsonl", PairsConfig(n=2))  # type: ignore[arg-type]
    spec = TaskSpec("Spam?", (Example("win now", "spam"), Example("hi", "ham")), "classification", ("spam", "ham"))
    with pytest.raises(UnsupportedTaskError):
        generate_pairs(spec, FakeLLM(broken), tmp_path / "g.jsonl")  # type: ignore[arg-type]


def test_tool_and_policy_use_pairs_for_tasks_without_labels(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from agent.context import Context
    from agent.policy import allowed_actions, generation_target
    from p2m_engine.runs import Run
    from p2m_engine.data.synth import SynthConfig
    from tools.synth import generate_examples

    llm = scripted(_numbered, lambda text, i: f"past: {text}")
    ctx = Context(run=Run.create(tmp_path, "t"), llm=llm, synth=SynthConfig(per_label=1))  # type: ignore[arg-type]
    state = {"task": GEN.to_dict()}
    assert generation_target(state, ctx) == 5 and "generate_examples" in allowed_actions(state, ctx)
    text, artifact = generate_examples.func(runtime=SimpleNamespace(context=ctx, state=state))  # type: ignore[attr-defined]
    assert artifact["generated"] == 5 and artifact["stopped_labels"] == [] and artifact["llm_calls"] == llm.usage.calls
    assert json.loads(text)["generated"] == 5
    rows = _rows(ctx.run.path("data", "generated.jsonl"))
    assert len(rows) == 5 and all(r["output"] == f"past: {r['input']}" for r in rows)


def test_schema_lengths_stay_within_the_llama_cpp_grammar_limit(tmp_path: Path) -> None:
    long_demo = "Question: who? Context: " + "word " * 1000
    spec = TaskSpec("Answer.", (Example(long_demo, "word"),), "extractive-qa")
    llm = scripted(lambda b: ["Question: what? Context: a new text about other things"], lambda t, i: "")
    generate_pairs(spec, llm, tmp_path / "q.jsonl", PairsConfig(n=1, max_chars=5000, max_output_chars=3000,  # type: ignore[arg-type]
                                                                 max_failed_batches=1))
    lengths = [p["maxLength"] for r in llm.requests for p in r["schema"]["properties"].values()]
    assert {r["name"] for r in llm.requests} == {"write_inputs", "write_output"} and max(lengths) <= 1000


def test_marked_inputs_are_written_field_by_field_and_put_together(tmp_path: Path) -> None:
    from p2m_engine.data.input_fields import field_template

    spec = TaskSpec("Answer the question by copying a span of the context.",
                    (Example("Question: Who won? Context: The Blue team won the final in 1990.", "The Blue team"),
                     Example("Question: When was it? Context: It rained in May 2001 over the hills.", "May 2001")),
                    "extractive-qa")
    template = field_template([e.input for e in spec.examples])
    assert template is not None and template.names == ("question", "context")
    assert [template.names[i] for i in template.order] == ["context", "question"]  # the passage is written first
    assert template.assemble({"question": "Why? ", "context": " Because."}) == "Question: Why? Context: Because."
    assert template.split("Question: a b? Context: c d.") == {"question": "a b?", "context": "c d."}
    assert field_template(["I walk home", "She reads"]) is None  # plain inputs are written whole

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs":
            # The teacher writes the fields, without markers; one input misses its question.
            return {"input_1_context": f"The Red fleet {i} sailed at dawn from port {i * 7} with {i + 2} ships.",
                    "input_1_question": "Who sailed?",
                    "input_2_context": f"A fox {i} ran.", "input_2_question": ""}
        return {"output": "the red fleet " + _asked_input(messages).split("fleet ")[1].split(" ")[0]}

    llm = FakeLLM(answer)
    res = generate_pairs(spec, llm, tmp_path / "qa.jsonl", PairsConfig(n=2, votes=3))  # type: ignore[arg-type]
    rows = _rows(tmp_path / "qa.jsonl")
    assert res.count == 2
    assert rows[0]["input"] == "Question: Who sailed? Context: The Red fleet 1 sailed at dawn from port 7 with 3 ships."
    assert rows[0]["output"] == "The Red fleet 1"
    schema = llm.requests[0]["schema"]
    assert list(schema["properties"])[:2] == ["input_1_context", "input_1_question"]
    # The demos are shown to the teacher as the same fields, long one first.
    assert '{"context": "The Blue team won the final in 1990.", "question": "Who won?"}' in \
        llm.requests[0]["messages"][-1]["content"]


def test_inputs_of_a_batch_are_answered_together_with_the_same_pairs(tmp_path: Path) -> None:
    import threading
    import time

    flight = {"now": 0, "most": 0}
    lock = threading.Lock()

    def output(text: str, i: int) -> str:  # every vote agrees: the answer depends on the input alone
        with lock:
            flight["now"] += 1
            flight["most"] = max(flight["most"], flight["now"])
        time.sleep(0.05)
        with lock:
            flight["now"] -= 1
        return f"past: {text}"

    written = {}
    for c in (1, 3):
        llm = scripted(_numbered, output)
        res = generate_pairs(GEN, llm, tmp_path / f"c{c}.jsonl", PairsConfig(n=5, batch_size=3, votes=3, concurrency=c))  # type: ignore[arg-type]
        assert res.count == 5
        written[c] = [(r["input"], r["output"]) for r in _rows(tmp_path / f"c{c}.jsonl")]
        if c == 1:
            assert flight["most"] == 1
            serial_calls = len(llm.requests)
    assert flight["most"] > 1  # answered together at concurrency 3
    assert written[3] == written[1]  # the same pairs, in the same order
    # One at a time, the last batch stops asking once the target is reached; together, it asks for the whole batch.
    assert serial_calls < len(llm.requests) <= serial_calls + 2 * 2


def test_the_planners_topics_are_what_input_batches_are_written_about(tmp_path: Path) -> None:
    chosen = ("harbour work", "garden chores")
    llm = scripted(_numbered, lambda text, i: f"past: {text}")
    generate_pairs(GEN, llm, tmp_path / "p.jsonl", PairsConfig(n=6, batch_size=3, votes=1), topics=chosen)  # type: ignore[arg-type]
    rows = _rows(tmp_path / "p.jsonl")
    asked = [r["messages"][-1]["content"] for r in llm.requests if r["name"] == "write_inputs"]
    assert rows and {r["topic"] for r in rows} <= set(chosen)
    assert asked and all(any(f"but about {t}." in p for t in chosen) for p in asked)


PARAPHRASES = ["Person1 has trouble breathing and the doctor will send Person1 to a specialist for asthma tests.",
               "The doctor asks Person1 about the breathing trouble and sends Person1 to a pulmonary specialist.",
               "Person1 cannot breathe well when working out, so the doctor sends Person1 to a specialist."]


def test_free_text_votes_keep_the_sample_closest_to_the_others() -> None:
    from p2m_engine.data.pairs import FREE_TEXT_AGREEMENT, free_text, majority

    # Three wordings of one summary never agree exactly; the one nearest the other two wins.
    vote = majority(PARAPHRASES, "generation", 3, 0.6, free=True)
    assert vote.output == PARAPHRASES[1] and vote.agreement >= FREE_TEXT_AGREEMENT
    assert majority(PARAPHRASES, "generation", 3, 0.6).reason == "no_majority"  # exact votes, as for code
    # Three answers about different things have no centre.
    unrelated = ["I can't breathe, but I'm doing well.", "No, I don't have any allergies that I know of.", PARAPHRASES[0]]
    assert majority(unrelated, "generation", 3, 0.6, free=True).reason == "no_majority"
    # Free text: every demo output has at least 12 words; a date or a line of code does not.
    assert free_text(PARAPHRASES) and not free_text([PARAPHRASES[0], "2013-03"]) and not free_text([])


def test_the_answerer_votes_on_free_text_when_the_demos_outputs_are_sentences() -> None:
    from p2m_engine.data.pairs import Answerer

    long_demos = (Example("#Person1#: My chest feels heavy.\n#Person2#: Let's run some tests.", PARAPHRASES[0]),
                  Example("#Person1#: Where is the gym?\n#Person2#: Next to the pool.",
                          "Person1 asks where the gym is and Person2 says that it is next to the swimming pool."))
    llm = FakeLLM(lambda messages, name, i: {"output": PARAPHRASES[i % 3]})
    vote = Answerer(TaskSpec("Summarize the dialogue.", long_demos, "generation"), llm, PairsConfig())(  # type: ignore[arg-type]
        "#Person1#: I can't breathe when I run.\n#Person2#: I will send you to a specialist.")
    assert vote.output == PARAPHRASES[1] and len(vote.samples) == 3
    short = (Example("a b", "x"), Example("c d", "y"))
    assert Answerer(TaskSpec("Map.", short, "generation"), llm, PairsConfig())("e f").reason == "no_majority"  # type: ignore[arg-type]
