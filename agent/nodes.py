"""The graph's nodes: plan (choose the next tool), observe (record its result), finish."""

from __future__ import annotations

import time
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent.context import Context
from agent.planner import ask_planner
from agent.policy import allowed_actions, facts, per_label_target, rules_choice
from agent.state import State


def plan(state: State, runtime: Runtime[Context]) -> Command[Literal["run_tools", "finish"]]:
    """Choose the next action among those the state allows.

    The rules propose the pipeline's next step. When the planner LLM leads, it chooses among the
    allowed actions; an unusable answer (no call, an action not allowed) falls back to the rules, and
    the trace says so. The step budget is checked before anything runs.
    """
    ctx = runtime.context
    steps = state.get("steps", 0)
    if steps >= ctx.max_steps:
        return Command(goto="finish", update={"finish_reason": f"step budget of {ctx.max_steps} reached"})
    allowed = allowed_actions(state, ctx)
    if not allowed:
        return Command(goto="finish", update={"finish_reason": "no valid action: no training data could be found or generated"})
    started = time.monotonic()
    action, decided_by = rules_choice(allowed), "rules"
    reason, tokens = "next step of the default pipeline", {"tokens_in": 0, "tokens_out": 0}
    if ctx.planner == "llm" and ctx.planner_model is not None and len(allowed) > 1:
        choice, why, tokens = ask_planner(ctx.planner_model, state["task"]["instruction"], facts(state, ctx), allowed)
        if choice is None:
            reason, decided_by = f"fallback to rules: {why}", "rules"
        else:
            action, reason, decided_by = choice, why, "llm"
    elif len(allowed) == 1:
        reason = "the only valid action"
    decision = {"kind": "decision", "node": "plan", "step": steps, "name": action, "decided_by": decided_by,
                "reason": reason, "allowed": allowed, "state": facts(state, ctx),
                "duration_ms": round((time.monotonic() - started) * 1000), **tokens}
    if action == "finish":
        why = reason if decided_by == "llm" else "model evaluated"
        return Command(goto="finish", update={"trace": [decision], "finish_reason": why})
    args = {"per_label": per_label_target(state, ctx)} if action == "generate_examples" and state.get("extra_per_label") else {}
    call = AIMessage(content="", tool_calls=[{"name": action, "args": args, "id": f"call-{steps}-{action}"}])
    return Command(goto="run_tools", update={"trace": [decision], "messages": [call]})


def observe(state: State) -> dict[str, Any]:
    """Fold the last tool result into the state: counts, paths and scores, and a trace record."""
    msg = state["messages"][-1]
    assert isinstance(msg, ToolMessage)
    art: dict[str, Any] = msg.artifact if isinstance(msg.artifact, dict) else {}
    ok = msg.status != "error"
    record = {"kind": "tool", "node": "run_tools", "step": state.get("steps", 0), "name": msg.name,
              "ok": ok, "output_summary": str(msg.content)[:500],
              "duration_ms": int(art.get("duration_s", 0) * 1000), "llm_calls": art.get("llm_calls", 0),
              "tokens": art.get("tokens", 0)}
    update: dict[str, Any] = {"steps": state.get("steps", 0) + 1, "trace": [record]}
    if not ok:
        record["error"] = str(msg.content)[:500]
        return update
    update["done"] = [msg.name]
    if msg.name == "search_datasets":
        update |= {"dataset": art.get("dataset"), "retrieved": art.get("retrieved", 0)}
        record["candidates"] = art.get("candidates", [])
    elif msg.name == "search_models":
        update |= {"base_model": art["base_model"], "base_model_name": art.get("base_model_name")}
        record["candidates"] = art.get("candidates", [])
    elif msg.name == "generate_examples":
        update |= {"generated": art.get("generated", 0), "per_label": art.get("per_label", {}),
                   "generation_stalled": bool(art.get("stopped_labels"))}
        record["dropped"] = art.get("dropped", {})
        record["stopped_labels"] = art.get("stopped_labels", [])
    elif msg.name == "train_model":
        update |= {"model_dir": art["model_dir"], "val_accuracy": art.get("val_accuracy"), "evaluated": False,
                   "trained_on": state.get("retrieved", 0) + state.get("generated", 0)}
    elif msg.name == "evaluate_model":
        update |= {"evaluated": True, "score": art.get("score"), "metrics": art.get("metrics")}
        record["score"] = art.get("score")
        record["score_split"] = art.get("score_split")
    return update


def finish(state: State) -> dict[str, Any]:
    """Close the build: the last evaluated model is the result."""
    reason = state.get("finish_reason") or "model evaluated"
    record = {"kind": "finish", "node": "finish", "step": state.get("steps", 0), "name": "finish",
              "reason": reason, "score": state.get("score"), "model_dir": state.get("model_dir")}
    return {"trace": [record], "finish_reason": reason}
