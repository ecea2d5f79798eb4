"""The contract between the tools and the agent, written once: what the tools read of the agent's state
(`StateView`), and how each tool's result becomes a state update and a trace record (`fold`), with the typed
result of an evaluation (`Evaluation`) that the agent folds into its iterations.

Only this module spells state keys on the tool side and artifact keys on the agent side: tools read
`StateView` attributes, the agent reads `Folded` and `Evaluation` attributes (tests/unit/test_layering.py checks
both). Every state key used here is a field of `agent.state.State` (the same test checks that too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from p2m_engine.types import TaskSpec

# The state keys this contract writes (tests compare them, and those StateView reads, with agent.state.State).
STATE_WRITES = frozenset({"dataset", "retrieved", "retrieved_per_label", "dataset_candidates", "real_per_label",
                          "model_candidates", "labelled", "base_model", "base_model_name",
                          "generated", "per_label", "generation_stalled", "targeted_at", "targeted_stalled",
                          "model_dir", "val_score", "evaluated", "iteration", "epochs", "score", "metrics"})


@dataclass(frozen=True)
class StateView:
    """What a tool may read of the agent's state."""

    task: TaskSpec
    base_model: str | None = None
    model_dir: str | None = None
    iteration: int = 0
    """Trainings so far (the current model's iteration)."""
    val_score: float | None = None
    failures_path: str | None = None
    per_label: dict[str, int] = field(default_factory=dict)
    """Generated examples per label so far."""
    real_per_label: dict[str, int] = field(default_factory=dict)
    retrieved_per_label: dict[str, int] = field(default_factory=dict)
    """The retrieved rows among them (what a search with a mix replaces)."""
    model_candidates: dict[str, str] = field(default_factory=dict)
    """Loadable base models search_models found, name -> folder (what train_model's `base_model` may name)."""

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> "StateView":
        return cls(TaskSpec.from_dict(state["task"]), state.get("base_model"), state.get("model_dir"),
                   int(state.get("iteration") or 0), state.get("val_score"), state.get("failures_path"),
                   dict(state.get("per_label") or {}), dict(state.get("real_per_label") or {}),
                   dict(state.get("retrieved_per_label") or {}), dict(state.get("model_candidates") or {}))


# The state keys this contract reads: StateView's fields.
STATE_READS = frozenset(StateView.__dataclass_fields__)


@dataclass(frozen=True)
class Evaluation:
    """An evaluated iteration, as the agent folds it into its history (evaluate_model's result)."""

    iteration: int | None
    decision_score: float
    decision_split: str | None
    decision_n: int | None
    metric: str
    score: float | None
    score_split: str | None
    metrics: dict[str, Any] | None
    predictions_dir: str | None
    weak_labels: list[str]
    failures: str | None
    failures_path: str | None


@dataclass(frozen=True)
class Folded:
    """A tool result folded for the agent: the state update, the fields of its trace record, its cost figures, and
    for an evaluation with a decision score the iteration to fold."""

    update: dict[str, Any]
    record: dict[str, Any]
    duration_ms: int = 0
    llm_calls: int = 0
    tokens: int = 0
    cost_usd: float | None = None
    evaluation: Evaluation | None = None


def _added(counts: dict[str, int] | None, more: dict[str, int] | None) -> dict[str, int]:
    """Per-label counts with more added."""
    out = dict(counts or {})
    for k, v in (more or {}).items():
        out[k] = out.get(k, 0) + int(v)
    return out


def _search_datasets(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    record = {"candidates": art.get("candidates", []), "dataset": art.get("dataset")}
    if art.get("skipped_lines"):  # malformed lines of the chosen dataset: shown, and counted in the data card
        record |= {"skipped_lines": art["skipped_lines"], "malformed_lines": art.get("malformed_lines", [])[:5]}
    if art.get("mix"):
        record["mix"] = art["mix"]
    # A search with a mix replaces what an earlier search retrieved: its rows leave the real counts first.
    earlier = {k: -v for k, v in view.retrieved_per_label.items()}
    return ({"dataset": art.get("dataset"), "retrieved": art.get("retrieved", 0),
             "retrieved_per_label": dict(art.get("retrieved_per_label") or {}),
             "dataset_candidates": list(art.get("usable") or []),
             "real_per_label": {k: v for k, v in _added(_added(view.real_per_label, earlier),
                                                        art.get("retrieved_per_label")).items() if v}}, record)


def _label_texts(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"labelled": art.get("labelled", 0),
             "real_per_label": _added(view.real_per_label, art.get("real_per_label", art.get("per_label")))},
            {"weights": art.get("weights", {}), "judges": art.get("judges", {}), "sources": art.get("sources", {}),
             **({"written": art["written"]} if art.get("written") else {})})  # how many, and why it stopped


def _search_models(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"base_model": art["base_model"], "base_model_name": art.get("base_model_name"),
             "model_candidates": dict(art.get("loadable") or {})}, {"candidates": art.get("candidates", [])})


def _generate_examples(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"generated": art.get("generated", 0), "per_label": art.get("per_label", {}),
             "generation_stalled": bool(art.get("stop_reason"))},
            {"dropped": art.get("dropped", {}), "stopped_labels": art.get("stopped_labels", []),
             "stop_reason": art.get("stop_reason")})


def _generate_targeted_examples(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"generated": art.get("generated", 0), "per_label": art.get("per_label", {}),
             "targeted_at": view.iteration, "targeted_stalled": not art.get("added")},
            {"weak_labels": art.get("weak_labels", []), "added": art.get("added", {}),
             "dropped": art.get("dropped", {}), "stopped_labels": art.get("stopped_labels", []),
             "stop_reason": art.get("stop_reason")})


def _train_model(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    iteration = art.get("iteration") or view.iteration + 1
    chosen = {"base_model": art["base_model"], "base_model_name": art.get("base_model_name")} \
        if art.get("base_model") else {}  # the planner chose another of the loadable base models
    return ({"model_dir": art["model_dir"], "val_score": art.get("val_score"), "evaluated": False,
             "iteration": iteration, "epochs": art.get("epochs"), **chosen},
            {"iteration": iteration, "epochs": art.get("epochs"), "val_score": art.get("val_score")})


def _evaluate_model(art: dict[str, Any], view: StateView) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"evaluated": True, "score": art.get("score"), "metrics": art.get("metrics")},
            {"score": art.get("score"), "score_split": art.get("score_split")})


FOLDS: dict[str, Callable[[dict[str, Any], StateView], tuple[dict[str, Any], dict[str, Any]]]] = {
    "search_datasets": _search_datasets, "label_texts": _label_texts, "search_models": _search_models,
    "generate_examples": _generate_examples, "generate_targeted_examples": _generate_targeted_examples,
    "train_model": _train_model, "evaluate_model": _evaluate_model,
}


def fold(name: str, artifact: Any, state: Mapping[str, Any], ok: bool = True) -> Folded:
    """The state update and trace record fields of tool `name`'s result (nothing but the figures when it failed
    or is not a known tool)."""
    art: dict[str, Any] = artifact if isinstance(artifact, dict) else {}
    figures = {"duration_ms": int(art.get("duration_s", 0) * 1000), "llm_calls": art.get("llm_calls", 0),
               "tokens": art.get("tokens", 0), "cost_usd": art.get("cost_usd")}
    if not ok or name not in FOLDS:
        return Folded({}, {}, **figures)
    update, record = FOLDS[name](art, StateView.of(state))
    evaluation = None
    if name == "evaluate_model" and art.get("decision_score") is not None:
        evaluation = Evaluation(art.get("iteration"), float(art["decision_score"]), art.get("decision_split"),
                                art.get("decision_n"), art.get("metric", "accuracy"), art.get("score"),
                                art.get("score_split"), art.get("metrics"), art.get("predictions_dir"),
                                list(art.get("weak_labels", [])), art.get("failures"), art.get("failures_path"))
    return Folded(update, record, **figures, evaluation=evaluation)
