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
from agent.planner import ask_planner
from agent.policy import action_args, allowed_actions, check_args, facts, llm_calls_left, measured_on, rules_choice
from agent.state import State
from p2m_engine.runs import export_model


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
                                                 ctx.tool_arguments)
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
    """Fold the last tool result into the state: counts, paths and scores, and a trace record."""
    msg = state["messages"][-1]
    assert isinstance(msg, ToolMessage)
    art: dict[str, Any] = msg.artifact if isinstance(msg.artifact, dict) else {}
    ok = msg.status != "error"
    record = {"kind": "tool", "node": "run_tools", "step": state.get("steps", 0), "name": msg.name,
              "ok": ok, "output_summary": str(msg.content)[:500],
              "duration_ms": int(art.get("duration_s", 0) * 1000), "llm_calls": art.get("llm_calls", 0),
              "tokens": art.get("tokens", 0), "cost_usd": art.get("cost_usd")}
    update: dict[str, Any] = {"steps": state.get("steps", 0) + 1, "trace": [record]}
    if not ok:
        record["error"] = str(msg.content)[:500]
        return update
    update["done"] = [msg.name]
    if msg.name == "search_datasets":
        update |= {"dataset": art.get("dataset"), "retrieved": art.get("retrieved", 0),
                   "real_per_label": _added(state.get("real_per_label"), art.get("retrieved_per_label"))}
        record |= {"candidates": art.get("candidates", []), "dataset": art.get("dataset")}
        if art.get("skipped_lines"):  # malformed lines of the chosen dataset: shown, and counted in the data card
            record |= {"skipped_lines": art["skipped_lines"], "malformed_lines": art.get("malformed_lines", [])[:5]}
    elif msg.name == "label_texts":
        update |= {"labelled": art.get("labelled", 0),
                   "real_per_label": _added(state.get("real_per_label"), art.get("real_per_label", art.get("per_label")))}
        record |= {"weights": art.get("weights", {}), "judges": art.get("judges", {}), "sources": art.get("sources", {})}
    elif msg.name == "search_models":
        update |= {"base_model": art["base_model"], "base_model_name": art.get("base_model_name")}
        record["candidates"] = art.get("candidates", [])
    elif msg.name == "generate_examples":
        update |= {"generated": art.get("generated", 0), "per_label": art.get("per_label", {}),
                   "generation_stalled": bool(art.get("stop_reason"))}
        record |= {"dropped": art.get("dropped", {}), "stopped_labels": art.get("stopped_labels", []),
                   "stop_reason": art.get("stop_reason")}
    elif msg.name == "generate_targeted_examples":
        update |= {"generated": art.get("generated", 0), "per_label": art.get("per_label", {}),
                   "targeted_at": state.get("iteration"), "targeted_stalled": not art.get("added")}
        record |= {"weak_labels": art.get("weak_labels", []), "added": art.get("added", {}),
                   "dropped": art.get("dropped", {}), "stopped_labels": art.get("stopped_labels", []),
                   "stop_reason": art.get("stop_reason")}
    elif msg.name == "train_model":
        iteration = art.get("iteration") or state.get("iteration", 0) + 1
        update |= {"model_dir": art["model_dir"], "val_score": art.get("val_score"), "evaluated": False,
                   "trained_on": state.get("retrieved", 0) + state.get("labelled", 0) + state.get("generated", 0), "iteration": iteration,
                   "epochs": art.get("epochs")}
        record |= {"iteration": iteration, "epochs": art.get("epochs"), "val_score": art.get("val_score")}
    elif msg.name == "evaluate_model":
        update |= {"evaluated": True, "score": art.get("score"), "metrics": art.get("metrics")}
        record["score"] = art.get("score")
        record["score_split"] = art.get("score_split")
        if art.get("decision_score") is not None:
            folded, iteration_record = _iteration(state, art)
            update |= folded
            update["trace"] = [record, iteration_record]
    return update


def _added(counts: dict[str, int] | None, more: dict[str, int] | None) -> dict[str, int]:
    """Per-label counts with more added."""
    out = dict(counts or {})
    for k, v in (more or {}).items():
        out[k] = out.get(k, 0) + int(v)
    return out


def _iteration(state: State, art: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold an evaluated iteration into the state (its decision score, whether it is the best so far, its
    failures); returns the state update and the iteration's trace record."""
    iteration = art.get("iteration") or state.get("iteration") or 1
    score = float(art["decision_score"])
    best = state.get("best_score")
    improved = best is None or score > best
    entry = {"iteration": iteration, "decision_split": art.get("decision_split"), "decision_score": score,
             "metric": art.get("metric", "accuracy"),
             "decision_n": art.get("decision_n"), "score": art.get("score"), "score_split": art.get("score_split"),
             "model_dir": state.get("model_dir"), "val_score": state.get("val_score"),
             "epochs": state.get("epochs"), "weak_labels": art.get("weak_labels", []),
             "predictions_dir": art.get("predictions_dir"), "metrics": art.get("metrics")}
    update: dict[str, Any] = {"history": [entry], "decision_split": art.get("decision_split"), "decision_score": score,
                              "failures": art.get("failures"), "failures_path": art.get("failures_path"),
                              "weak_labels": art.get("weak_labels", [])}
    if improved:
        update |= {"best_model_dir": state.get("model_dir"), "best_score": score, "best_iteration": iteration}
    record = {
        "kind": "iteration", "node": "observe", "step": state.get("steps", 0), "name": "iteration",
        "iteration": iteration, "decision_split": art.get("decision_split"), "decision_n": art.get("decision_n"),
        "decision_score": score, "metric": art.get("metric", "accuracy"), "score": art.get("score"),
        "score_split": art.get("score_split"),
        "improved": improved, "best_iteration": iteration if improved else state.get("best_iteration"),
        "best_score": score if improved else best, "weak_labels": art.get("weak_labels", []),
        "failures": art.get("failures"),
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
