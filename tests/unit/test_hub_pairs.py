"""Real hub inputs for tasks without labels, put in the demos' shape and answered by a scripted teacher
(label_texts for generation and extractive QA)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agent.context import Context
from agent.policy import allowed_actions, generation_target
from p2m_engine.data.hub_pairs import Shape, answer_texts, ascii_share, like_parts
from p2m_engine.data.labelling import LabelConfig, label_texts
from p2m_engine.data.pairs import PairsConfig
from p2m_engine.data.synth import SynthConfig
from p2m_engine.runs import Run
from p2m_engine.types import Example, TaskSpec
from tests.fakes import FakeLLM

DATED = TaskSpec("Find the date expressions in the sentence relative to the posted date.",
                 (Example("[Posted: 2001-05-02] The harbour bridge reopened in early March after the storm.", "early March == 2001-03"),
                  Example("[Posted: 2001-05-02] Voters went to the polls last Sunday across the region.", "last Sunday == 2001-04-29"),
                  Example("[Posted: 2001-05-02] Shares of the airline fell sharply in January.", "January == 2001-01")),
                 "generation")
QA = TaskSpec("Answer the question by copying the shortest span of the context.",
              (Example("Question: Who built the mill? Context: The old mill by the river was built by Jonas Berg in 1820.", "Jonas Berg"),
               Example("Question: When did the ferry stop? Context: The island ferry ran daily until it stopped in 1971.", "1971")),
              "extractive-qa")
NEWS = ["The city council approved the new budget in late October.",
        "Rail workers went on strike last Friday over pay.",
        "The museum reopened in early June after repairs to its roof.",
        "Fishermen reported a record catch of cod in the spring.",
        "The mayor announced on Tuesday that the bridge would close.",
        "What time does the museum open on Sundays?",  # a question: not the form of the demos
        "Sentence 2: The strike ended after two days of talks."]  # a field marker the demos lack
JAPANESE = ["ファイルを閉じる方法を教えてください、今日のニュースでした。"]


def _hub(root: Path, rows: list[str], name: str = "news") -> Path:
    folder = root / "hub" / name
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"name": name, "task_type": "generation"}))
    (folder / "train.jsonl").write_text("".join(json.dumps({"input": x, "output": "-"}) + "\n" for x in rows))
    return root / "hub"


def _asked(messages: list[dict[str, Any]]) -> str:
    return re.findall(r"^input: (.*)$", messages[-1]["content"], re.MULTILINE)[-1]


def test_the_shape_keeps_the_demos_prefix_or_their_fields() -> None:
    plain = Shape.of([e.input for e in DATED.examples])
    assert plain.template is None and plain.prefix == "[Posted: 2001-05-02] "
    assert plain.part(DATED.examples[0].input) == "The harbour bridge reopened in early March after the storm."
    fields = Shape.of([e.input for e in QA.examples])
    assert fields.real == "context" and fields.written == ("question",) and fields.fixed == ()
    assert fields.part(QA.examples[0].input) == "The old mill by the river was built by Jonas Berg in 1820."


def test_a_piece_must_have_the_form_and_the_script_of_the_demos() -> None:
    parts = ["The bridge reopened in March.", "Voters went to the polls."]
    assert like_parts("Rail workers went on strike.", parts)
    assert not like_parts("When did the strike end?", parts)
    assert not like_parts("Sentence 2: The strike ended.", parts)
    assert like_parts("When did the strike end?", ["Who won?", "Where is it?"])
    assert not like_parts("The strike ended.", ["Who won?", "Where is it?"])
    assert ascii_share("The strike ended.") == 1.0 and ascii_share(JAPANESE[0]) == 0.0


def test_hub_texts_get_the_demos_prefix_and_the_teachers_answer_with_provenance(tmp_path: Path) -> None:
    hub = _hub(tmp_path, NEWS + JAPANESE)
    teacher = FakeLLM(lambda m, name, i: {"output": _asked(m).split("] ")[1].split()[0] + " == 2001"})
    out = tmp_path / "labelled.jsonl"
    held_out = ["[Posted: 2001-05-02] " + NEWS[1]]
    result = answer_texts(DATED, [hub], out, teacher, 10, PairsConfig(votes=1, answer_temperature=0.0),  # type: ignore[arg-type]
                          exclude=[NEWS[1]] + held_out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    inputs = [r["input"] for r in rows]
    # The question is not taken, nor the marked field whole: its value alone is a piece like the demos.
    expected = (NEWS[0], NEWS[2], NEWS[3], NEWS[4], "The strike ended after two days of talks.")
    assert sorted(inputs) == sorted("[Posted: 2001-05-02] " + x for x in expected)
    assert all(r["source"] == "teacher_labelled" and r["hub"] == "news/train" for r in rows)
    assert rows[0]["output"].endswith("== 2001") and result.count == 5 and result.sources == {"news": 5}
    assert all(r["temperature"] == 0.0 for r in teacher.requests)  # the teacher's best answer, once
    assert result.dropped == {"other_script": 1} and result.llm_calls == 5
    # Resumed with the rows there: they count, and nothing is asked again.
    again = answer_texts(DATED, [hub], out, teacher, 5, PairsConfig(votes=1), exclude=held_out)  # type: ignore[arg-type]
    assert again.count == 5 and again.llm_calls == 0


def test_an_output_that_copies_its_input_or_repeats_a_demo_is_dropped(tmp_path: Path) -> None:
    hub = _hub(tmp_path, NEWS[:4])
    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        asked = _asked(messages).split("] ", 1)[1]
        return {"output": {1: asked, 2: "January == 2001-01"}.get(i, f"{asked.split()[1]} == 2001")}

    teacher = FakeLLM(answer)
    result = answer_texts(DATED, [hub], tmp_path / "l.jsonl", teacher, 4, PairsConfig(votes=1))  # type: ignore[arg-type]
    assert result.count == 2
    assert result.dropped == {"output_copies_input": 1, "output_repeats_demo": 1}


def test_a_field_input_takes_the_hub_text_as_its_context_and_the_teacher_writes_the_question(tmp_path: Path) -> None:
    passages = ["The lighthouse on the northern cape was lit for the first time in 1874 by Ada Holm.",
                "The village school was founded by Karl Lind after the great fire of 1902."]
    hub = _hub(tmp_path, passages)

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_fields":
            assert "Here is the context of a new input" in messages[0]["content"]
            return {"question": "Who was it?"}
        asked = _asked(messages)
        return {"output": "Ada Holm" if "Ada Holm" in asked else "the founder"}  # not a span of the second

    teacher = FakeLLM(answer)
    out = tmp_path / "l.jsonl"
    result = answer_texts(QA, [hub], out, teacher, 5, PairsConfig(votes=1))  # type: ignore[arg-type]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["input"] for r in rows] == [f"Question: Who was it? Context: {passages[0]}"]
    assert rows[0]["output"] == "Ada Holm" and rows[0]["template"] == "answer_input+complete_input"
    assert result.dropped == {"not_a_span": 1}


def test_a_hub_text_longer_than_an_input_may_be_is_never_sent_to_the_teacher(tmp_path: Path) -> None:
    short = "The lighthouse on the northern cape was lit for the first time in 1874 by Ada Holm."
    long = ("The harbour master Ada Holm kept the northern lighthouse for forty years and logged each ship that "
            "passed the rocky cape by night.")
    hub = _hub(tmp_path, [short, long])
    seen: list[str] = []

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        seen.append(messages[-1]["content"])
        return {"question": "Who lit it?"} if name == "write_fields" else {"output": "Ada Holm"}

    config = PairsConfig(votes=1, max_chars=120)  # an input may hold 120 characters: the long text alone has more
    assert len(long) > 120 > len(f"Question: Who lit it? Context: {short}")
    result = answer_texts(QA, [hub], tmp_path / "l.jsonl", FakeLLM(answer), 5, config)  # type: ignore[arg-type]
    assert result.count == 1 and "too_long" not in result.dropped
    assert seen and not any("forty years" in text for text in seen)


def test_label_texts_answers_hub_inputs_for_a_task_without_labels_and_writes_nothing_without_a_teacher(tmp_path: Path) -> None:
    hub = _hub(tmp_path, NEWS)
    assert label_texts(DATED, [hub], tmp_path / "none.jsonl", LabelConfig(texts=3)).count == 0
    # Each answer names a word of its own input, as the demos' answers do (the grounding check).
    teacher = FakeLLM(lambda m, name, i: {"output": f"{_asked(m).split('] ', 1)[1].split()[1]} == 2001"})
    result = label_texts(DATED, [hub], tmp_path / "l.jsonl", LabelConfig(texts=3), llm=teacher)  # type: ignore[arg-type]
    assert result.count == 3 and result.per_label == {} and result.sources == {"news": 3}


def test_a_task_without_labels_labels_hub_text_once_with_a_teacher_and_generates_only_what_it_leaves_short(tmp_path: Path) -> None:
    task = DATED.to_dict()
    searched = {"task": task, "base_model": "/m", "trace": [{"kind": "tool", "name": "search_datasets"}]}
    ctx = Context(run=Run.create(tmp_path, "t"), hub_dirs=[tmp_path], synth=SynthConfig(per_label=2),
                  llm=FakeLLM(lambda m, n, i: {}))
    assert "label_texts" in allowed_actions(searched, ctx)
    # A dataset retrieved for such a task does not stop it (generation runs beside it too); for classification it does.
    assert "label_texts" in allowed_actions({**searched, "retrieved": 30}, ctx)
    labelled_task = {**searched, "task": {**task, "task_type": "classification", "labels": ["a", "b"],
                                          "examples": [{"input": "x", "output": "a"}]}}
    assert "label_texts" in allowed_actions(labelled_task, ctx)
    assert "label_texts" not in allowed_actions({**labelled_task, "retrieved": 30}, ctx)
    done = {**searched, "labelled": 4, "trace": [*searched["trace"], {"kind": "tool", "name": "label_texts"}]}
    assert "label_texts" not in allowed_actions(done, ctx)
    assert generation_target(done, ctx) == 10 - 4 and generation_target({**done, "labelled": 12}, ctx) == 0
    no_teacher = Context(run=Run.create(tmp_path, "u"), hub_dirs=[tmp_path], synth=SynthConfig(per_label=2), llm=None)
    assert "label_texts" not in allowed_actions(searched, no_teacher)


def test_the_tool_answers_no_more_hub_texts_than_generation_would_write_and_generation_writes_the_rest(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tools.labelling import label_texts as label_tool
    from tools.synth import generate_examples

    more = ["The town council met in May to discuss the harbour.", "Farmers sold their first cherries early in June.",
            "A storm closed the airport for two days last winter.", "The choir sang at the cathedral on Easter Sunday.",
            "Builders finished the new library in late September.", "The river flooded the lower streets in March.",
            "Students returned to the university after the summer break."]
    hub = _hub(tmp_path, more)

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs":  # generation: new sentences of its own
            words = ("ferry sailed north", "bakery opened downtown", "orchestra toured abroad", "market moved east")
            return {f"input_{k + 1}": f"[Posted: 2001-05-02] The {words[k]} in April, call {i}." for k in range(len(words))}
        return {"output": f"{_asked(messages).split()[3]} == 2001"}

    ctx = Context(run=Run.create(tmp_path, "t"), llm=FakeLLM(answer), hub_dirs=[hub],  # type: ignore[arg-type]
                  synth=SynthConfig(per_label=1), labelling=LabelConfig(texts=200))
    state: dict[str, Any] = {"task": DATED.to_dict()}
    text, art = label_tool.func(SimpleNamespace(context=ctx, state=state))  # type: ignore[attr-defined]
    assert art["labelled"] == 5 and json.loads(text)["sources"] == {"news": 5}, art["dropped"]  # 5 = the pairs of per_label=1
    state["labelled"] = 5
    assert generation_target(state, ctx) == 0
    state["labelled"] = 3
    Path(art["path"]).write_text("".join(Path(art["path"]).read_text().splitlines(keepends=True)[:3]))
    _, gen = generate_examples.func(runtime=SimpleNamespace(context=ctx, state=state))  # type: ignore[attr-defined]
    assert gen["generated"] == 2, gen  # what the 3 hub pairs leave short of 5
