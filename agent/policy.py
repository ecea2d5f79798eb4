"""The guard rails of the state machine: which actions are valid now, and what the rules would choose."""

from __future__ import annotations

from typing import Any

from agent.context import Context
from p2m_engine.pairs import PAIRS_PER_LABEL_BUDGET

ACTIONS: dict[str, str] = {
    "search_datasets": "search the dataset hub for real labelled data that fits the task",
    "search_models": "find a base model for the student",
    "generate_examples": "generate synthetic labelled examples with the teacher LLM",
    "train_model": "fine-tune the student on the data gathered so far",
    "evaluate_model": "score the trained student on real held-out data",
    "finish": "stop and export the best model",
}
# The rules take the first allowed action in this order.
ORDER = list(ACTIONS)
MAX_GENERATE_CALLS = 3


def generation_target(state: dict[str, Any], ctx: Context) -> int:
    labels = state["task"].get("labels") or ()
    return ctx.synth.per_label * (len(labels) if labels else PAIRS_PER_LABEL_BUDGET)  # no labels: a total target


def allowed_actions(state: dict[str, Any], ctx: Context) -> list[str]:
    """Actions that make sense in `state`: nothing is trained before there is data, nothing evaluated twice."""
    tried = [t.get("name") for t in state.get("trace", []) if t.get("kind") == "tool"]
    allowed = []
    if ctx.hub_dirs and "search_datasets" not in tried:
        allowed.append("search_datasets")
    if not state.get("base_model") and tried.count("search_models") < 2:
        allowed.append("search_models")
    if (ctx.llm is not None and ctx.synth.per_label > 0 and state.get("generated", 0) < generation_target(state, ctx)
            and tried.count("generate_examples") < MAX_GENERATE_CALLS and not state.get("generation_stalled")):
        allowed.append("generate_examples")
    data = state.get("retrieved", 0) + state.get("generated", 0)
    if state.get("base_model") and data > 0 and data != state.get("trained_on", 0):
        allowed.append("train_model")
    if state.get("model_dir") and not state.get("evaluated"):
        allowed.append("evaluate_model")
    if state.get("evaluated"):
        allowed.append("finish")
    return allowed


def rules_choice(allowed: list[str]) -> str:
    """The deterministic pipeline order: search data, search models, generate, train, evaluate, finish."""
    return min(allowed, key=ORDER.index)


def facts(state: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A short summary of the state for the planner prompt and the trace."""
    return {
        "labels": ", ".join(state["task"].get("labels") or ()),
        "steps_taken": state.get("steps", 0),
        "steps_left": ctx.max_steps - state.get("steps", 0),
        "dataset": state.get("dataset"),
        "retrieved_examples": state.get("retrieved", 0),
        "generated_examples": state.get("generated", 0),
        "generation_target": generation_target(state, ctx),
        "base_model": state.get("base_model_name"),
        "trained": bool(state.get("model_dir")),
        "val_accuracy": state.get("val_accuracy"),
        "test_score": state.get("score"),
        "last_actions": state.get("done", [])[-4:],
    }
