"""Tool: evaluate the student on real held-out data and on the demonstrations, and analyse its failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine.data.datasets import load_examples
from p2m_engine.errors import TrainingError
from p2m_engine.eval.iteration import evaluate_iteration, held_out
from tools.context import Meter, ToolContext, observation
from tools.contracts import StateView


@tool(response_format="content_and_artifact")
def evaluate_model(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
    """Score the trained student on real held-out data.

    It is scored on examples it never trained on: the dev split (real, held out from the
    retrieved dataset, used for the build's decisions), the test data (the test file, or the retrieved
    dataset's held-out split; reported, never decided on), the user's demonstrations, and the validation rows
    held back from the training data (synthetic when nothing was retrieved; decided on when there is no dev
    split).

    Returns the task type's metrics for each split (accuracy, macro-F1 and per-label recall for classification;
    exact match and F1 for extractive QA; chrF++ and exact match for generation), and for classification the
    weak labels and confusions on the decision split.
    """
    ctx: ToolContext = runtime.context
    view = StateView.of(runtime.state)
    meter = Meter(None)
    if not view.model_dir:
        raise TrainingError("No trained model yet. Call train_model first.")
    spec, iteration = view.task, view.iteration or 1
    splits = {"demos": list(spec.examples)}
    # The real held-out splits without the demonstrations, which the student trained on.
    demos_dropped: dict[str, int] = {}
    for name, path in (("dev", ctx.run.data("dev")), ("test", ctx.test_path or ctx.run.data("test"))):
        if path.is_file():
            rows = load_examples(path)
            kept = held_out(rows, spec.examples)
            if len(kept) < len(rows):
                demos_dropped[name] = len(rows) - len(kept)
            if kept:  # a file of nothing but the demos is no held-out split
                splits[name] = kept
    val_path = ctx.run.data("val")
    if val_path.is_file() and val_path.stat().st_size:
        splits["val"] = load_examples(val_path)  # held back from training: reported apart from the real splits
    ev = evaluate_iteration(spec, Path(view.model_dir), splits, ctx.run.path("iterations", str(iteration), "predictions"),
                            ctx.target)
    metrics: dict[str, Any] = {**ev.metrics, "val_score": view.val_score,
                               **({"demos_dropped": demos_dropped} if demos_dropped else {})}
    ctx.run.write_json(f"iterations/{iteration}/metrics.json", metrics)
    artifact = {"score": ev.score, "score_split": ev.score_split, "metric": ev.metric, "metrics": metrics,
                "iteration": iteration, "predictions_dir": str(ev.predictions_dir), "decision_score": ev.decision_score,
                "decision_split": ev.decision_split, "decision_n": ev.decision_n, **meter.figures()}
    summary: dict[str, Any] = {name: {"n": m["n"], **{k: round(v, 4) for k, v in m["metrics"].items()},
                                      "recall": {k: round(v, 3) for k, v in m["per_label_recall"].items()}}
                               for name, m in ev.metrics.items()}
    summary["decision_split"] = ev.decision_split
    if demos_dropped:
        summary["demos_dropped"] = demos_dropped
    if ev.failures is not None:
        artifact |= {"failures_path": str(ev.failures_path), "failures": ev.failures.summary(),
                     "weak_labels": list(ev.failures.weak_labels)}
        summary["failures"] = ev.failures.summary()
    return observation(summary), artifact
