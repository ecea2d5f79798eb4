"""The clarify_task node: before a build starts, the questions a prompt leaves open and the plan, asked through
LangGraph interrupts (a chat) or skipped (an unattended build). The graph imports it from here, so it knows no
screen; the chat front end (agent/chat.py) answers the interrupts.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.context import Context
from agent.state import State
from p2m_engine.clarify import CANCEL, DECLINE, YES, ambiguities, apply_edit, parse_edit
from p2m_engine.types import MAIN_METRIC, TaskSpec

MAX_PLAN_ROUNDS = 3


def score_source(spec: TaskSpec, ctx: Context) -> str:
    """What the build's score will be measured on, said before it runs (it may find no real held-out data)."""
    n = len(spec.examples)
    demos = f"your {n} demonstration{'' if n == 1 else 's'}"
    untrusted = (f"a score on {n} demonstration{'' if n == 1 else 's'} cannot be trusted: give a labelled test file "
                 "(--test FILE) for a real measure")
    if ctx.test_path is not None:
        return f"on your test file {ctx.test_path.name}: real data the build never trains or decides on."
    if ctx.hub_dirs or ctx.catalog_dir:
        return (f"on real rows held out of the retrieved dataset, if the search finds one that fits the task. If none "
                f"fits, only on {demos}, and {untrusted}.")
    return (f"there is no real held-out data (no test file, no dataset hub to search). The build decides on generated "
            f"rows held back from training and reports its score on {demos}; {untrusted}.")


def describe_plan(spec: TaskSpec, ctx: Context) -> str:
    """What the build will do, in a few lines, for the user to approve: the task as edited, the steps, the target
    and what the score will be measured on."""
    labels = f" with labels {', '.join(spec.labels)}" if spec.labels else ""
    lines = [f"Task: {spec.task_type}{labels}."]
    lines += [f"  {label}: {meaning}" for label, meaning in spec.label_descriptions.items()]
    steps = []
    if ctx.hub_dirs or ctx.catalog_dir:
        where = f"{len(ctx.hub_dirs)} dataset hub folder(s)" + (" and the Hub catalog" if ctx.catalog_dir else "")
        steps.append(f"Search {where} for real labelled data.")
    steps.append("Pick a base model that runs on this machine.")
    if ctx.llm is not None:
        per = f"{ctx.synth.per_label} per label" if spec.labels else "a batch"
        steps.append(f"Generate training examples with {getattr(ctx.llm, 'model', 'the LLM')} ({per}).")
    steps.append(f"Train the student and evaluate it; iterate within the budget until {MAIN_METRIC[spec.task_type]} "
                 f"reaches {ctx.target}.")
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    lines.append(f"Score: {score_source(spec, ctx)}")
    return "\n".join(lines) + "\nBuild it? (yes, or tell me what to change)"


def retarget(spec: TaskSpec, ctx: Context) -> float:
    """Make an edited task the run's task: write it to the run's records and aim the build at its metric's target."""
    if ctx.record_task is not None:
        ctx.target = ctx.record_task(spec)
    return ctx.target


def clarify_task(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask what the prompt leaves open, then propose the plan; apply every answer to the task.

    Runs once per build thread. Outside a chat (`ctx.interactive` false) it asks nothing. Each question is a
    LangGraph interrupt; once answered the node replays, and interrupt() returns the answers in order.
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
        retarget(spec, ctx)  # every edit reaches the run's records at once
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
        retarget(spec, ctx)
        turns.append({"question": "plan", "answer": answer, "change": edit.describe()})
    else:
        if not declined:
            declined = f"the plan was not approved in {MAX_PLAN_ROUNDS} rounds"
    target = retarget(spec, ctx)
    record = {"kind": "human", "node": "clarify_task", "step": 0, "name": "clarify_task", "turns": turns,
              "task": spec.to_dict(), "metric": MAIN_METRIC[spec.task_type], "target": target}
    if declined:
        record["declined"] = declined
        return {"clarified": True, "task": spec.to_dict(), "declined": declined,
                "finish_reason": f"not built: {declined}", "trace": [record]}
    return {"clarified": True, "task": spec.to_dict(), "trace": [record]}


def after_clarify(state: State) -> str:
    """Route after clarify_task: to the planner, or to the end when the user declined (nothing is built)."""
    return "__end__" if state.get("declined") else "plan"
