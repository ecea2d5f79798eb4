"""Chat on the build graph: clarifying questions through interrupts, the plan approved, answers from the trace,
and a request that steers a finished build (scripted answers, fake tools, real LangGraph)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from agent.chat import explain, is_question, make_converse, steer
from agent.graph import build_graph
from agent.runner import run_build
from agent.trace import TraceWriter
from p2m_engine.clarify import TaskEdit, ambiguities, apply_edit, parse_edit, rule_edit
from p2m_engine.types import TaskSpec
from tests.fakes import FakeLLM
from tests.unit.test_graph import CALLS, FAKE_TOOLS, TASK, _ctx

@tool(response_format="content_and_artifact")
def generate_examples(per_label: int = 0) -> tuple[str, dict[str, Any]]:
    """fake: every call adds two examples per label"""
    CALLS.append("generate_examples")
    n = 4 * CALLS.count("generate_examples")
    return "{}", {"generated": n, "per_label": {"spam": n // 2, "ham": n // 2}, "llm_calls": 2, "tokens": 30}


TOOLS = [generate_examples if t.name == "generate_examples" else t for t in FAKE_TOOLS]

# The instruction names no label set, so the agent asks whether there are more labels than the demos show.
OPEN_TASK = {**TASK, "instruction": "Sort these SMS messages."}


def _chat(tmp_path: Path, answers: list[str], requests: list[str], llm: Any = None) -> tuple[dict[str, Any], list[Any]]:
    ctx = _ctx(tmp_path, interactive=True)
    if llm is not None:
        ctx.llm = llm
    asked: list[Any] = []
    replies, lines = iter(answers), iter(requests)

    def ask(prompt: dict[str, Any]) -> str:
        asked.append(prompt)
        return next(replies)

    shown: list[str] = []
    converse = make_converse(ctx.run.dir, None, lambda: next(lines, "quit"), shown.append)
    CALLS.clear()
    graph = build_graph(TOOLS, checkpointer=InMemorySaver())
    state = run_build(TaskSpec.from_dict(OPEN_TASK), ctx, TraceWriter(ctx.run.dir, ctx.run.id), graph=graph, ask=ask,
                      converse=converse)
    return state, [asked, shown]


def test_clarifying_question_answered_then_plan_approved(tmp_path: Path) -> None:
    state, (asked, _) = _chat(tmp_path, ["neutral", "no", "yes"], [])
    assert [a["kind"] for a in asked] == ["question", "question", "plan"]
    assert "spam, ham" in asked[0]["text"]
    # The answer added a label before anything was built, and the build used it.
    assert state["task"]["labels"] == ["spam", "ham", "neutral"]
    assert "with labels spam, ham, neutral" in asked[2]["text"]
    assert CALLS[:3] == ["search_datasets", "search_models", "generate_examples"] and CALLS[-1] == "evaluate_model"
    human = [e for e in state["trace"] if e["kind"] == "human"]
    assert human[0]["turns"][0]["change"] == "added labels neutral" and human[0]["turns"][-1]["change"] == "approved"


def test_plan_rejected_with_a_change_is_asked_again(tmp_path: Path) -> None:
    state, (asked, _) = _chat(tmp_path, ["no", "no", "remove the label ham and add label promo", "ok"], [])
    assert [a["kind"] for a in asked] == ["question", "question", "plan", "plan"]
    assert state["task"]["labels"] == ["spam", "promo"]
    assert "spam, promo" in asked[3]["text"]


def test_unattended_build_never_asks(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)  # interactive is False
    graph = build_graph(TOOLS, checkpointer=InMemorySaver())
    CALLS.clear()
    state = run_build(TaskSpec.from_dict(OPEN_TASK), ctx, TraceWriter(ctx.run.dir, ctx.run.id), graph=graph)
    assert state["clarified"] and state["score"] == 0.8 and len(CALLS) == 5


def test_why_question_is_answered_from_the_trace_and_a_request_steers_the_build(tmp_path: Path) -> None:
    state, (_, shown) = _chat(tmp_path, ["no", "no", "yes"],
                              ["why did you pick this dataset?", "more examples of sarcastic messages", "quit"])
    assert "search_datasets was chosen by rules" in shown[1] and "d: score 0.9" in shown[1]
    assert "Changed: noted: more examples of sarcastic messages.; more examples" in shown[2]
    # After the request the build continued from the planner: more generation, retraining, re-evaluation.
    assert CALLS[:6] == ["search_datasets", "search_models", "generate_examples", "train_model", "evaluate_model",
                         "generate_examples"]
    assert CALLS[-2:] == ["train_model", "evaluate_model"]
    assert "more examples of sarcastic messages" in state["task"]["instruction"] and state["extra_per_label"] == 1
    # The raised target reaches the tool: the planner passes the new per-label count.
    calls = [m for m in state["messages"] if getattr(m, "tool_calls", None)]
    assert calls[-3].tool_calls[0]["args"] == {"per_label": 7}


def test_ambiguities_are_generic() -> None:
    spec = TaskSpec.from_dict(OPEN_TASK)
    assert [q.key for q in ambiguities(spec)] == ["labels", "examples"]
    enumerated = TaskSpec.from_dict({**TASK, "examples": TASK["examples"] * 2})
    assert ambiguities(enumerated) == []  # "spam or ham" is in the instruction, and there are 4 demos


def test_rule_edits() -> None:
    spec = TaskSpec.from_dict(TASK)
    assert rule_edit("no", spec) == TaskEdit() and rule_edit("yes please", spec).note
    assert rule_edit("add labels promo and alert", spec).add_labels == ("promo", "alert")
    assert rule_edit("remove the label ham", spec).remove_labels == ("ham",)
    assert rule_edit("remove the label nothere", spec).remove_labels == ()
    edit = rule_edit("Use more examples of slang", spec)
    assert edit.more_examples and edit.note == "Use more examples of slang."
    new = apply_edit(spec, TaskEdit(add_labels=("promo",), note="Promotions are promo."))
    assert new.labels == ("spam", "ham", "promo") and new.instruction.endswith("Promotions are promo.")
    dropped = apply_edit(spec, TaskEdit(remove_labels=("ham",)))
    assert dropped.labels == ("spam",) and all(e.output == "spam" for e in dropped.examples)


def test_llm_edit_is_checked_and_falls_back_to_rules() -> None:
    spec = TaskSpec.from_dict(TASK)
    good = FakeLLM(lambda m, n, i: {"add_labels": ["promo"], "remove_labels": ["nothere"], "note": "",
                                   "more_examples": False})
    assert parse_edit("please also detect promotions", spec, good) == TaskEdit(add_labels=("promo",))
    assert "detect promotions" in good.requests[0]["messages"][0]["content"]
    empty = FakeLLM(lambda m, n, i: {"add_labels": [], "remove_labels": [], "note": "", "more_examples": False})
    assert parse_edit("add label promo", spec, empty).add_labels == ("promo",)  # rules take over
    # Plain yes/no never reach the LLM.
    silent = FakeLLM(lambda m, n, i: {})
    assert parse_edit("ok", spec, silent) == TaskEdit() and silent.requests == []


def test_explain_and_question_detection() -> None:
    trace = [{"kind": "decision", "name": "search_models", "step": 1, "decided_by": "llm", "allowed": ["search_models"],
              "reason": "need a base"},
             {"kind": "tool", "name": "search_models", "output_summary": '{"base_model": "m"}',
              "candidates": [{"name": "m", "score": 1.0, "reason": "22M params"}]}]
    text = explain("Why this model?", trace)
    assert "chosen by llm" in text and "need a base" in text and "m: score 1.0; 22M params" in text
    assert "has not run train_model" in explain("why so few epochs", trace)
    assert "I can explain" in explain("hmm?", trace)
    assert is_question("why?") and is_question("Which dataset") and not is_question("add a label x")
    update, edit = steer({"task": TASK, "steps": 3}, "add label promo")
    assert update["task"]["labels"][-1] == "promo" and update["extra_per_label"] == 1 and not update["evaluated"]


def test_chat_command_end_to_end_through_the_openai_path(tmp_path: Path, tiny_encoder: Path) -> None:
    """`p2m chat` as a user runs it: a question, the plan approved, a why-question, quit (loopback API, tiny student)."""
    import json

    from click.testing import CliRunner

    from agent.cli import cli
    from tests.conftest import DEMO_HUB
    from tests.openai_stub import OpenAIStub
    from tests.unit.test_openai_build import Teacher

    prompt = 'Sort these SMS messages.\n\ninput="WIN cash now, text 8008"\noutput="spam"\n\n' \
             'input="see you at 5"\noutput="ham"\n'
    with OpenAIStub(responder=Teacher(), model="gpt-test") as stub:
        result = CliRunner().invoke(
            cli, ["chat", prompt, "--llm", "openai", "--base-url", stub.base_url, "--model", "gpt-test", "--hub",
                  str(DEMO_HUB), "--student", str(tiny_encoder), "--out", str(tmp_path),
                  "--budget", "per_label=2,epochs=1,retrieved=20,iterations=1"],
            input="spam, ham\nno\nyes\nwhy did you pick this dataset?\nquit\n", env={"OPENAI_API_KEY": "sk-chat-test"})
    assert result.exit_code == 0, result.output
    import re

    flat = re.sub(r"[\s│╭╮╰╯─]+", " ", result.output)  # the panels wrap and frame the text
    # Two one-word demos that never repeat could be labels or free text: the agent asks, the answer decides.
    assert "Should the model pick one of a fixed set of labels" in flat and "Build it?" in flat
    assert "Task: classification with labels spam, ham." in flat
    assert "search_datasets was chosen" in flat
    [run] = [p for p in tmp_path.iterdir() if (p / "trace.jsonl").is_file()]
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    human = [e for e in events if e["kind"] == "human"]
    assert human and [t["answer"] for t in human[0]["turns"]] == ["spam, ham", "no", "yes"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"]["task_type"] == "classification" and summary["task"]["labels"] == ["spam", "ham"]
    assert (run / "model" / "config.json").is_file()


CONSENT_PROMPT = ('Is this SMS spam or ham?\n\ninput="WIN cash now, text 8008"\noutput="spam"\n\n'
                  'input="see you at 5"\noutput="ham"\n\ninput="Free prize, call now"\noutput="spam"\n\n'
                  'input="lunch tomorrow?"\noutput="ham"\n')


@pytest.mark.parametrize("answers", ["no\nno\nno\n", "no, stop\nno, stop\nno, stop\n", "cancel\ncancel\ncancel\n", ""],
                         ids=["no", "no-stop", "cancel", "eof"])
def test_chat_refusal_or_end_of_input_builds_nothing(tmp_path: Path, answers: str) -> None:
    """`p2m chat`: a refusal of the plan, or stdin at end of file, ends the chat; nothing is built or paid for."""
    import json

    from click.testing import CliRunner

    from agent.build import EXIT_DECLINED
    from agent.cli import cli
    from tests.openai_stub import OpenAIStub
    from tests.unit.test_openai_build import Teacher

    with OpenAIStub(responder=Teacher(), model="gpt-test") as stub:
        result = CliRunner().invoke(
            cli, ["chat", CONSENT_PROMPT, "--llm", "openai", "--base-url", stub.base_url, "--model", "gpt-test",
                  "--out", str(tmp_path), "--budget", "per_label=2,epochs=1,iterations=1"],
            input=answers, env={"OPENAI_API_KEY": "sk-chat-test"})
        completions = [r for r in stub.requests if r["path"].rstrip("/").endswith("chat/completions")]
    assert result.exit_code == EXIT_DECLINED, result.output
    assert "Build it?" in result.output and "Nothing was built" in result.output
    assert completions == []  # not one LLM call: no planning, no generation
    [run] = list(tmp_path.iterdir())
    assert not (run / "model").exists() and not (run / "data" / "generated.jsonl").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["declined"] and summary["model_dir"] is None
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events if e["kind"] in ("decision", "tool")] == []
    assert any(e.get("declined") for e in events if e["kind"] == "human")


def test_plan_never_approved_is_not_built(tmp_path: Path) -> None:
    """Three rounds of changes without a yes: the graph ends at clarify_task, no tool runs."""
    state, (asked, _) = _chat(tmp_path, ["no", "no", "add label a", "add label b", "add label c"], [])
    assert [a["kind"] for a in asked] == ["question", "question", "plan", "plan", "plan"]
    assert state["declined"] and CALLS == []
