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
    assert "search_datasets was chosen by rules" in shown[1]
    assert "I used the dataset d (similarity 0.90 to the task)." in shown[1]
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
    from tests.openai_stub import SmsTeacher

    prompt = 'Sort these SMS messages.\n\ninput="WIN cash now, text 8008"\noutput="spam"\n\n' \
             'input="see you at 5"\noutput="ham"\n'
    with OpenAIStub(responder=SmsTeacher(), model="gpt-test") as stub:
        result = CliRunner().invoke(
            cli, ["chat", prompt, "--llm", "openai", "--base-url", stub.base_url, "--model", "gpt-test", "--hub",
                  str(DEMO_HUB), "--base-model", str(tiny_encoder), "--out", str(tmp_path),
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


# --- a task edited in chat is the run's task everywhere ------------------------------------------------------

BANK_PROMPT = """Read a bank customer's message and say whether it is about a card problem, a transfer, or something else.

input="My card was declined at the supermarket this morning."
output="card"

input="I sent money to my landlord yesterday and it has not arrived."
output="transfer"

input="What are your opening hours on Saturday?"
output="other"
"""
FRAUD = "messages about suspicious charges"


class BankTeacher:
    """An API model for the bank task: inputs for the label asked for, "none" for the hub's datasets, and edits
    parsed as a small model parses them (the added label's name, not its description)."""

    def __init__(self) -> None:
        self.n = 0
        self.fail_generation = False
        self.generation: dict[str, list[str]] = {}
        """Every generation prompt, by the label it asked for."""

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        import re

        name = body["tool_choice"]["function"]["name"]
        params = body["tools"][0]["function"]["parameters"]
        text = body["messages"][-1]["content"]
        if name == "choose_action":
            return "tool", {"action": params["properties"]["action"]["enum"][0], "reason": "next in order"}
        if name == "choose_dataset":
            return "tool", {"dataset": "none", "reason": "the candidates are about other tasks"}
        if name == "map_labels":
            return "tool", {key: "drop" for key in params["required"]}
        if name == "edit_task":
            said = text.split("The user said: ", 1)[1].splitlines()[0]
            added, removed = re.search(r"add a label (\w+)", said), re.search(r"remove the label (\w+)", said)
            add = [added.group(1)] if added else [] if removed else [x.strip() for x in said.split(",")]
            return "tool", {"add_labels": add, "remove_labels": [removed.group(1)] if removed else [], "note": "",
                            "more_examples": False}
        assert name == "write_inputs", name
        if self.fail_generation:
            return "status", 400  # refused at once: the build stops with an error, to be resumed
        label = re.search(r'correct label is "([^"]+)"', text).group(1)  # type: ignore[union-attr]
        self.generation.setdefault(label, []).append(text)
        out = {}
        for key in params["required"]:
            self.n += 1
            out[key] = f"{label} message number {self.n} on topic {self.n * 7 % 13}"
        return "tool", out


def _events(run: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]


def test_task_edited_in_chat_is_the_runs_task_everywhere(tmp_path: Path, tiny_encoder: Path) -> None:
    """`p2m chat` on a prompt parsed as generation: the answer makes it a 3-label classifier, a label is added with
    its description and another removed; the build fails at generation and `p2m resume` finishes it; `p2m train`
    trains it again. Every record and every step reads the edited task."""
    import json

    from click.testing import CliRunner

    from agent.cli import cli
    from tests.conftest import DEMO_HUB
    from tests.openai_stub import OpenAIStub

    teacher = BankTeacher()
    teacher.fail_generation = True
    answers = ["card, transfer, other", f"add a label fraud for {FRAUD}", "remove the label other", "yes"]
    env = {"OPENAI_API_KEY": "sk-chat-test"}
    with OpenAIStub(responder=teacher, model="gpt-test") as stub:
        result = CliRunner().invoke(
            cli, ["chat", BANK_PROMPT, "--llm", "openai", "--base-url", stub.base_url, "--model", "gpt-test", "--hub",
                  str(DEMO_HUB), "--base-model", str(tiny_encoder), "--out", str(tmp_path),
                  "--budget", "per_label=2,epochs=1,retrieved=20,labelled=0,iterations=1"],
            input="\n".join(answers) + "\n", env=env)
        assert result.exit_code == 1 and "refused the request (HTTP 400)" in result.output, result.output
        [run] = [p for p in tmp_path.iterdir() if (p / "trace.jsonl").is_file()]

        # The records hold the edited task from the moment the chat edited it, before anything was generated.
        task = json.loads((run / "task.json").read_text())
        assert task["task_type"] == "classification" and task["labels"] == ["card", "transfer", "fraud"]
        assert task["label_descriptions"] == {"fraud": FRAUD}
        assert [e["output"] for e in task["examples"]] == ["card", "transfer"]
        config = json.loads((run / "config.json").read_text())
        # The target is accuracy's, not the 0.6 chrF++ of the task as parsed before the chat.
        assert (config["task_type"], config["metric"], config["target"]) == ("classification", "accuracy", 0.9)
        [human] = [e for e in _events(run) if e["kind"] == "human"]
        assert (human["metric"], human["target"]) == ("accuracy", 0.9) and human["task"] == task
        import re

        flat = re.sub(r"[\s│╭╮╰╯─]+", " ", result.output)  # the panels wrap and frame the text
        # Each plan shows the task as edited so far, the target of its metric, and what the score is measured on.
        assert "Task: classification with labels card, transfer, other. " in flat
        assert f"Task: classification with labels card, transfer, other, fraud. fraud: {FRAUD} " in flat
        assert "Task: classification with labels card, transfer, fraud. " in flat
        assert "until accuracy reaches 0.9" in flat and "chrf" not in flat
        assert "If none fits, only on your 2 demonstrations, and a score on 2 demonstrations cannot be trusted" in flat

        # `p2m resume` continues from the checkpoint, with the edited task and its target.
        teacher.fail_generation = False
        config["train"]["max_epochs"] = 1
        (run / "config.json").write_text(json.dumps(config))
        resumed = CliRunner().invoke(cli, ["resume", str(run), "--json"], env=env)
        assert resumed.exit_code in (0, 2), resumed.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"] == 0.9 and summary["task"]["labels"] == ["card", "transfer", "fraud"]
    assert "0.6" not in str(summary["finish_reason"])
    decisions = [e for e in _events(run) if e["kind"] == "decision"]
    assert decisions and {d["state"]["target"] for d in decisions} == {0.9}
    # Generation asked for the three labels of the edited task, never the removed one; the added label's prompts
    # carry its description.
    assert set(teacher.generation) == {"card", "transfer", "fraud"}
    assert all(f"- fraud: {FRAUD}" in p and f'correct label is "fraud" ({FRAUD})' in p for p in teacher.generation["fraud"])
    assert all(f"- fraud: {FRAUD}" in p for p in teacher.generation["card"])
    # The model, its card and the data card describe the edited task.
    model_task = json.loads((run / "model" / "p2m_task.json").read_text())
    assert model_task["labels"] == ["card", "transfer", "fraud"] and model_task["label_descriptions"] == {"fraud": FRAUD}
    card = (run / "model" / "README.md").read_text()
    assert "**Labels**: card, transfer, fraud" in card and f"`fraud`: {FRAUD}" in card
    assert f"| fraud | {FRAUD} |" in (run / "data" / "README.md").read_text()
    # `p2m train RUN` reads task.json: it trains the same 3-label classifier again.
    trained = CliRunner().invoke(cli, ["train", str(run), "--epochs", "1", "--json"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    again = json.loads(trained.output[trained.output.rindex('{"model_dir"'):].splitlines()[0])
    assert again["metric"] == "accuracy"
    retrained = json.loads((Path(again["model_dir"]) / "p2m_task.json").read_text())
    assert retrained["task_type"] == "classification" and retrained["labels"] == ["card", "transfer", "fraud"]
    assert set(json.loads((Path(again["model_dir"]) / "config.json").read_text())["id2label"].values()) == \
        {"card", "transfer", "fraud"}


def test_plan_says_what_the_score_is_measured_on(tmp_path: Path) -> None:
    from agent.clarify import describe_plan

    spec = TaskSpec.from_dict({**TASK, "label_descriptions": {"spam": "unsolicited ads"}})
    no_real = _ctx(tmp_path)
    no_real.hub_dirs = []  # no hub, no test file
    text = describe_plan(spec, no_real)
    assert "spam: unsolicited ads" in text and "until accuracy reaches 0.9" in text
    assert "no real held-out data" in text and "real held-out data the" not in text
    assert "reports its score on your 2 demonstrations; a score on 2 demonstrations cannot be trusted" in text
    assert "hub folder" not in text and "\n1. Pick a base model" in text and "\n2. Generate" in text
    test_file = tmp_path / "held_out.jsonl"
    with_test = _ctx(tmp_path, test_path=test_file)
    text = describe_plan(spec, with_test)
    assert "Score: on your test file held_out.jsonl: real data the build never trains or decides on." in text
    assert "cannot be trusted" not in text
    hub_only = _ctx(tmp_path)
    assert "on real rows held out of the retrieved dataset, if the search finds one" in describe_plan(spec, hub_only)


def test_why_no_dataset_is_answered_in_a_sentence_with_the_json_on_request(tmp_path: Path) -> None:
    import json

    from agent.chat import raw_result

    candidates = [{"name": "sms_spam", "score": 0.2134, "reason": "similarity 0.21 below 0.35"},
                  {"name": "imdb_sentences", "score": 0.1811, "reason": "similarity 0.18 below 0.35"}]
    output = json.dumps({"dataset": None, "retrieved": 0, "candidates": candidates})
    trace = [{"kind": "decision", "name": "search_datasets", "step": 0, "decided_by": "rules",
              "allowed": ["search_datasets"], "reason": "the only valid action"},
             {"kind": "tool", "name": "search_datasets", "ok": True, "output_summary": output,
              "candidates": candidates, "dataset": None}]
    text = explain("why did you not use any dataset?", trace)
    assert ("No dataset was used. The closest candidate was sms_spam, with similarity 0.21 to the task; it was "
            "rejected: similarity 0.21 below 0.35. The others: imdb_sentences (0.18).") in text
    assert "{" not in text and "show the JSON" in text
    assert json.loads(raw_result("search_datasets", trace))["output_summary"] == output
    taken = [{**trace[1], "dataset": "sms_spam",
              "candidates": [{**candidates[0], "score": 0.61, "reason": "labels fit by name; taken (best similarity "
                                                                       "that fits)"}]}]
    assert explain("why this dataset?", taken) == (
        "I used the dataset sms_spam (similarity 0.61 to the task): labels fit by name; taken (best similarity that "
        "fits).\n(Say 'show the JSON' for the step's full result.)")
    # In the chat: the answer first, the JSON when asked for it.
    (tmp_path / "trace.jsonl").write_text("".join(json.dumps(e) + "\n" for e in trace))
    shown: list[str] = []
    lines = iter(["why did you not use any dataset?", "show me the JSON", "quit"])
    make_converse(tmp_path, None, lambda: next(lines), shown.append)({"finish_reason": "done", "score": 0.5})
    assert shown[1].startswith("No dataset was used") and json.loads(shown[2])["candidates"] == candidates
    assert "Step 0: search_datasets was chosen by rules" in shown[1]  # how the step came to run, after what it found


def test_edits_with_label_descriptions() -> None:
    spec = TaskSpec.from_dict({**TASK, "labels": ["spam", "ham"]})
    edit = rule_edit(f"add a label fraud for {FRAUD}", spec)
    assert edit == TaskEdit(add_labels=("fraud",), descriptions={"fraud": FRAUD})
    assert edit.describe() == f"added labels fraud ({FRAUD})"
    assert rule_edit("add label promo (discounts and offers)", spec).descriptions == {"promo": "discounts and offers"}
    assert rule_edit("add labels promo and alert", spec).descriptions == {}
    # A small model names the label and drops what the user said it means: the rules keep the description.
    terse = FakeLLM(lambda m, n, i: {"add_labels": ["fraud"], "remove_labels": [], "note": "", "more_examples": False})
    assert parse_edit(f"add a label fraud for {FRAUD}", spec, terse).descriptions == {"fraud": FRAUD}
    assert "label_descriptions" in terse.requests[0]["schema"]["properties"]
    # A description the LLM gives is kept when it is of a label the task has or gets, and dropped otherwise.
    full = FakeLLM(lambda m, n, i: {"add_labels": ["fraud"], "remove_labels": [], "note": "", "more_examples": False,
                                    "label_descriptions": [{"label": "fraud", "description": "charges the customer "
                                                                                             "did not make"},
                                                           {"label": "nothere", "description": "x"}]})
    assert parse_edit("also flag fraud", spec, full).descriptions == {"fraud": "charges the customer did not make"}
    added = apply_edit(spec, edit)
    assert added.label_descriptions == {"fraud": FRAUD} and added.to_dict()["label_descriptions"] == {"fraud": FRAUD}
    # Removing the label removes its description; a task without descriptions keeps its old JSON.
    removed = apply_edit(added, TaskEdit(remove_labels=("fraud",)))
    assert removed.label_descriptions == {} and "label_descriptions" not in removed.to_dict()


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
    from tests.openai_stub import SmsTeacher

    with OpenAIStub(responder=SmsTeacher(), model="gpt-test") as stub:
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
