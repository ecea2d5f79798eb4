"""Chat on the build graph: the clarify_task node (LangGraph interrupts), answers from the trace, and steering.

In a chat the graph stops at `clarify_task` with an interrupt for every open question and for the plan; the
CLI shows it and resumes with the user's answer (`Command(resume=text)`). Unattended builds skip the node's
questions. After a build, "why ..." questions are answered from the decision trace, and any other request
edits the task and continues the same graph thread from the planner.
"""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.context import Context
from agent.state import State
from p2m_engine.clarify import CANCEL, DECLINE, YES, TaskEdit, ambiguities, apply_edit, parse_edit
from p2m_engine.types import TaskSpec

MAX_PLAN_ROUNDS = 3


def describe_plan(spec: TaskSpec, ctx: Context) -> str:
    """What the build will do, in a few lines, for the user to approve."""
    labels = f" with labels {', '.join(spec.labels)}" if spec.labels else ""
    steps = [f"Task: {spec.task_type}{labels}."]
    if ctx.hub_dirs:
        steps.append(f"1. Search {len(ctx.hub_dirs)} dataset hub folder(s) for real labelled data.")
    steps.append("2. Pick a base model that runs on this machine.")
    if ctx.llm is not None:
        per = f"{ctx.synth.per_label} per label" if spec.labels else "a batch"
        steps.append(f"3. Generate training examples with {getattr(ctx.llm, 'model', 'the LLM')} ({per}).")
    steps.append("4. Train the student, evaluate it on real held-out data, and iterate within the budget.")
    return "\n".join(steps) + "\nBuild it? (yes, or tell me what to change)"


def clarify_task(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask what the prompt leaves open, then propose the plan; apply every answer to the task.

    Runs once per build thread. Outside a chat (`ctx.interactive` false) it asks nothing. Each question is a
    LangGraph interrupt; on resume the node replays, and interrupt() returns the answers in order.
    """
    ctx = runtime.context
    if state.get("clarified") or not ctx.interactive:
        return {"clarified": True}
    spec = TaskSpec.from_dict(state["task"])
    llm = ctx.llm
    turns = []
    declined = None
    for q in ambiguities(spec):
        answer = str(interrupt({"kind": "question", "key": q.key, "text": q.text}))
        if CANCEL.match(answer):  # "quit", "cancel" (and end of input, which reads as "quit") end the chat
            turns.append({"question": q.text, "answer": answer, "change": "cancelled"})
            declined = f"you answered {answer.strip()!r} to a question"
            break
        edit = parse_edit(answer, spec, llm, q)
        spec = apply_edit(spec, edit)
        turns.append({"question": q.text, "answer": answer, "change": edit.describe()})
    # Only an explicit yes builds: a refusal, or no yes within the rounds, ends the chat with nothing built
    # (with an API teacher a build spends money, which needs the user's consent).
    for _ in range(0 if declined else MAX_PLAN_ROUNDS):
        answer = str(interrupt({"kind": "plan", "text": describe_plan(spec, ctx)}))
        if YES.match(answer):
            turns.append({"question": "plan", "answer": answer, "change": "approved"})
            break
        if DECLINE.match(answer):
            turns.append({"question": "plan", "answer": answer, "change": "declined"})
            declined = f"you answered {answer.strip()!r} to the plan"
            break
        edit = parse_edit(answer, spec, llm)
        spec = apply_edit(spec, edit)
        turns.append({"question": "plan", "answer": answer, "change": edit.describe()})
    else:
        if not declined:
            declined = f"the plan was not approved in {MAX_PLAN_ROUNDS} rounds"
    record = {"kind": "human", "node": "clarify_task", "step": 0, "name": "clarify_task", "turns": turns,
              "task": spec.to_dict()}
    if declined:
        record["declined"] = declined
        return {"clarified": True, "task": spec.to_dict(), "declined": declined,
                "finish_reason": f"not built: {declined}", "trace": [record]}
    return {"clarified": True, "task": spec.to_dict(), "trace": [record]}


def after_clarify(state: State) -> str:
    """Route after clarify_task: to the planner, or to the end when the user declined (nothing is built)."""
    return "__end__" if state.get("declined") else "plan"


# --- answers from the trace ---------------------------------------------------------------------------------

# Words of a question that point at a step of the build (the step names are the tools').
_TOPICS = [
    (re.compile(r"\b(data ?sets?|hub|retriev\w*|real data)\b", re.I), "search_datasets"),
    (re.compile(r"\b(base )?models?\b|\bstudent\b|\bencoder\b", re.I), "search_models"),
    (re.compile(r"\b(generat\w*|synthetic|examples?|teacher)\b", re.I), "generate_examples"),
    (re.compile(r"\b(train\w*|epochs?)\b", re.I), "train_model"),
    (re.compile(r"\b(scores?|evaluat\w*|accuracy|metrics?|test)\b", re.I), "evaluate_model"),
    (re.compile(r"\b(stop\w*|finish\w*|end\w*|done)\b", re.I), "finish"),
]


def _topic(question: str) -> str | None:
    for pattern, name in _TOPICS:
        if pattern.search(question):
            return name
    return None


def explain(question: str, trace: list[dict[str, Any]]) -> str:
    """Answer a "why" question from the decision trace: the decision, its reason, and what the step found."""
    topic = _topic(question)
    if topic is None:
        steps = [e["name"] for e in trace if e.get("kind") == "decision"]
        return ("I can explain these steps: " + ", ".join(dict.fromkeys(steps)) +
                ". Ask e.g. 'why did you pick this dataset?'") if steps else "Nothing has been decided yet."
    lines: list[str] = []
    for e in trace:
        if e.get("name") != topic:
            continue
        if e.get("kind") == "decision":
            lines.append(f"Step {e.get('step')}: {topic} was chosen by {e.get('decided_by')} among "
                         f"{', '.join(e.get('allowed', []))}: {e.get('reason')}.")
        elif e.get("kind") == "tool":
            lines.append(f"It returned: {e.get('output_summary', '')[:300]}")
            for c in (e.get("candidates") or [])[:5]:
                if isinstance(c, dict):
                    fit = c.get("reason") or c.get("fit") or ""
                    lines.append(f"  - {c.get('name')}: score {c.get('score')}{'; ' + fit if fit else ''}")
        elif e.get("kind") == "finish":
            lines.append(f"The build stopped: {e.get('reason')} (score {e.get('score')}).")
    return "\n".join(lines) if lines else f"The build has not run {topic} yet."


def is_question(text: str) -> bool:
    return bool(re.match(r"^\s*(why|how come|what|which|explain)\b", text, re.I)) or text.strip().endswith("?")


def steer(state: dict[str, Any], request: str, llm: Any = None) -> tuple[dict[str, Any], TaskEdit]:
    """The state update that applies a user's request to a finished (or paused) build.

    The task is edited; the current model counts as not evaluated, and a request for more examples raises
    the generation target, so the planner offers generation, training and evaluation again.
    """
    spec = TaskSpec.from_dict(state["task"])
    edit = parse_edit(request, spec, llm)
    new = apply_edit(spec, edit)
    # The user's change starts a new round: models built before it are no longer the yardstick for "best".
    update: dict[str, Any] = {"task": new.to_dict(), "evaluated": False, "generation_stalled": False,
                              "finish_reason": None, "best_model_dir": None, "best_score": None,
                              "best_iteration": None, "targeted_stalled": False,
                              "trace": [{"kind": "human", "node": "chat", "step": state.get("steps", 0),
                                         "name": "steer", "request": request, "change": edit.describe()}]}
    if edit.more_examples or edit.add_labels or edit.note:
        update["extra_per_label"] = int(state.get("extra_per_label", 0)) + 1
    return update, edit



QUIT = {"", "q", "quit", "exit", "bye"}


def make_converse(trace_path_dir: Any, llm: Any, read: Any, show: Any) -> Any:
    """The after-build chat turn: answer "why" questions from the trace, steer on any other request.

    Args:
        trace_path_dir: the run folder (its trace.jsonl is read fresh for every answer).
        llm: the teacher LLM used to parse requests (None: rules only).
        read: returns the user's next line.
        show: prints a message.
    """
    from agent.trace import read_trace

    def converse(state: dict[str, Any]) -> dict[str, Any] | None:
        show(f"Build finished: {state.get('finish_reason')} (score {state.get('score')}). Ask why, ask for a "
             "change (e.g. 'add a label X', 'more examples of ...'), or 'quit'.")
        while True:
            text = read().strip()
            if text.lower() in QUIT:
                return None
            if is_question(text):
                show(explain(text, read_trace(trace_path_dir)))
                continue
            update, edit = steer(state, text, llm)
            if edit.is_empty():
                show("I did not understand a change to make. Try 'add a label X', 'remove the label X', or "
                     "'more examples of ...'.")
                continue
            show(f"Changed: {edit.describe()}. Continuing the build.")
            return update

    return converse
