"""The graph's nodes: plan (choose the next tool), observe (record its result and each iteration), finish
(export the best model)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent.context import Context
from agent.planner import ask_planner, last_results
from agent.policy import action_args, allowed_actions, check_args, facts, llm_calls_left, measured_on, rules_choice
from agent.state import State
from p2m_engine.runs import export_model
from tools.contracts import Evaluation, fold


def plan(state: State, runtime: Runtime[Context]) -> Command[Literal["run_tools", "finish"]]:
    """Choose the next action among those the state allows.

    The rules (the heuristic advisor) propose the next step: the pipeline first, then, while the validation
    score lags the target, targeted generation or retraining, and finish on target, plateau or budget.
    When the planner LLM leads, it chooses among the allowed actions; an unusable answer (no call, an
    action not allowed) falls back to the rules, and the trace says so. The step budget is checked before
    anything runs. Every decision row names the split its scores came from (`decision_split`).
    """
    ctx = runtime.context
    steps = state.get("steps", 0)
    if steps >= ctx.max_steps:
        return Command(goto="finish", update={"finish_reason": f"budget: step budget of {ctx.max_steps} reached"})
    allowed = allowed_actions(state, ctx)
    if not allowed:
        return Command(goto="finish", update={"finish_reason": "no valid action: no training data could be found or generated"})
    started = time.monotonic()
    action, reason = rules_choice(allowed, state, ctx)
    decided_by, tokens = "rules", {"tokens_in": 0, "tokens_out": 0}
    asks_llm = ctx.planner == "llm" and ctx.llm is not None and len(allowed) > 1
    chosen_args: dict[str, Any] = {}
    arg_notes: dict[str, Any] = {}
    if asks_llm and llm_calls_left(ctx):
        choice, why, tokens, given = ask_planner(ctx.llm, state["task"]["instruction"], facts(state, ctx), allowed,
                                                 ctx.tool_arguments, last_results(state.get("messages", [])))
        try:
            chosen_args, clipped = check_args(choice, given, state, ctx) if choice else ({}, {})
        except ValueError as e:
            choice, why = None, f"its arguments were refused ({e}; it asked {given!r})"
        if choice is None:
            reason, decided_by = f"fallback to rules: {why}", "rules"
        else:
            action, reason, decided_by = choice, why, "llm"
            if chosen_args:
                arg_notes = {"args_by": "llm", **({"clipped": clipped} if clipped else {})}
    elif asks_llm:
        reason = f"fallback to rules: the LLM budget is spent, the planner is not asked ({reason})"
    elif len(allowed) == 1 and action != "finish":
        reason = "the only valid action"
    args = {**action_args(action, state, ctx), **chosen_args}
    decision = {"kind": "decision", "node": "plan", "step": steps, "name": action, "decided_by": decided_by,
                "reason": reason, "allowed": allowed, "args": args, **arg_notes,
                "decision_split": state.get("decision_split"),
                "state": facts(state, ctx), "duration_ms": round((time.monotonic() - started) * 1000), **tokens}
    if action == "finish":
        return Command(goto="finish", update={"trace": [decision], "finish_reason": reason})
    call = AIMessage(content="", tool_calls=[{"name": action, "args": args, "id": f"call-{steps}-{action}"}])
    return Command(goto="run_tools", update={"trace": [decision], "messages": [call]})


def observe(state: State) -> dict[str, Any]:
    """Fold the last tool result into the state: counts, paths and scores, and a trace record (the tool's result
    is read through its contract, tools.contracts.fold)."""
    msg = state["messages"][-1]
    assert isinstance(msg, ToolMessage)
    ok = msg.status != "error"
    folded = fold(str(msg.name), msg.artifact, state, ok)
    record = {"kind": "tool", "node": "run_tools", "step": state.get("steps", 0), "name": msg.name,
              "ok": ok, "output_summary": str(msg.content)[:500], "duration_ms": folded.duration_ms,
              "llm_calls": folded.llm_calls, "tokens": folded.tokens, "cost_usd": folded.cost_usd, **folded.record}
    update: dict[str, Any] = {"steps": state.get("steps", 0) + 1, "trace": [record], "tried": [msg.name]}
    if not ok:
        record["error"] = str(msg.content)[:500]
        return update
    update |= {"done": [msg.name], **folded.update}
    if msg.name == "train_model":  # what the new model was trained on: the counts before this step
        update["trained_on"] = state.get("retrieved", 0) + state.get("labelled", 0) + state.get("generated", 0)
    if folded.evaluation is not None:
        more, iteration_record = _iteration(state, folded.evaluation)
        update |= more
        update["trace"] = [record, iteration_record]
    return update


def _iteration(state: State, ev: Evaluation) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold an evaluated iteration into the state (its decision score, whether it is the best so far, its
    failures); returns the state update and the iteration's trace record."""
    iteration = ev.iteration or state.get("iteration") or 1
    score = ev.decision_score
    best = state.get("best_score")
    improved = best is None or score > best
    entry = {"iteration": iteration, "decision_split": ev.decision_split, "decision_score": score,
             "metric": ev.metric, "decision_n": ev.decision_n, "score": ev.score, "score_split": ev.score_split,
             "model_dir": state.get("model_dir"), "val_score": state.get("val_score"),
             "epochs": state.get("epochs"), "weak_labels": ev.weak_labels,
             "predictions_dir": ev.predictions_dir, "metrics": ev.metrics}
    update: dict[str, Any] = {"history": [entry], "decision_split": ev.decision_split, "decision_score": score,
                              "failures": ev.failures, "failures_path": ev.failures_path,
                              "weak_labels": ev.weak_labels}
    if improved:
        update |= {"best_model_dir": state.get("model_dir"), "best_score": score, "best_iteration": iteration}
    record = {
        "kind": "iteration", "node": "observe", "step": state.get("steps", 0), "name": "iteration",
        "iteration": iteration, "decision_split": ev.decision_split, "decision_n": ev.decision_n,
        "decision_score": score, "metric": ev.metric, "score": ev.score, "score_split": ev.score_split,
        "improved": improved, "best_iteration": iteration if improved else state.get("best_iteration"),
        "best_score": score if improved else best, "weak_labels": ev.weak_labels, "failures": ev.failures,
    }
    return update, record


def finish(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Close the build: export the best model by decision score (not the last one) and say why it stopped.

    The best iteration's model is copied to run/model with its predictions and metrics; model_dir, score
    and metrics then point at it. Its test score is reported here, never used to choose it.
    """
    reason = state.get("finish_reason") or "model evaluated"
    history = state.get("history", [])
    best = next((h for h in history if h["iteration"] == state.get("best_iteration")), None)
    source = state.get("best_model_dir") or state.get("model_dir")
    update: dict[str, Any] = {"finish_reason": reason}
    if best is not None:
        update |= {"score": best["score"], "metrics": best["metrics"], "val_score": best["val_score"],
                   "decision_score": best["decision_score"], "model_dir": source}
    if source and Path(source).is_dir():
        predictions = Path(best["predictions_dir"]) if best and best.get("predictions_dir") else None
        update["model_dir"] = str(export_model(Path(source), runtime.context.run, predictions,
                                               best["metrics"] if best else state.get("metrics")))
    record = {"kind": "finish", "node": "finish", "step": state.get("steps", 0), "name": "finish", "reason": reason,
              "score": update.get("score", state.get("score")), "score_split": best["score_split"] if best else None,
              "decision_split": state.get("decision_split"), "decision_score": state.get("best_score"),
              "best_iteration": state.get("best_iteration"), "exported_from": source,
              "measured_on": measured_on(best["score_split"] if best else None,
                                         int(((best or {}).get("metrics") or {}).get((best or {}).get("score_split") or "", {}).get("n", 0))),
              "model_dir": update.get("model_dir", state.get("model_dir")),
              "iterations": [{"iteration": h["iteration"], "decision_score": h["decision_score"], "score": h["score"]}
                             for h in history]}
    return {**update, "trace": [record]}
