"""Tool: evaluate the student on real held-out data and on the demonstrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine import students
from p2m_engine.datasets import load_examples
from p2m_engine.errors import TrainingError
from p2m_engine.types import MAIN_METRIC
from tools.context import Meter, ToolContext, observation, spec_of


@tool(response_format="content_and_artifact")
def evaluate_model(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
    """Score the trained student on real held-out examples (the test file, or the held-out split of the
    retrieved dataset) and on the user's demonstrations, which never train the model.

    Returns the task type's metrics for each split (accuracy, macro-F1 and per-label recall for classification;
    exact match and F1 for extractive QA; chrF++ and exact match for generation).
    """
    ctx: ToolContext = runtime.context
    state = runtime.state
    meter = Meter(None)
    if not state.get("model_dir"):
        raise TrainingError("No trained model yet. Call train_model first.")
    model_dir = Path(state["model_dir"])
    spec = spec_of(state)
    splits = {"demos": list(spec.examples)}
    test_path = ctx.test_path or ctx.run.dir / "data" / "test.jsonl"
    if test_path.is_file():
        splits["test"] = load_examples(test_path)
    reports = {name: students.evaluate_student(spec.task_type, model_dir, rows, name,
                                                ctx.run.path("predictions", f"{name}.jsonl"))
               for name, rows in splits.items()}
    metrics = {name: r.to_dict() for name, r in reports.items()}
    metrics["val_accuracy"] = state.get("val_accuracy")
    ctx.run.write_json("metrics.json", metrics)
    main = "test" if "test" in reports else "demos"
    metric = MAIN_METRIC[spec.task_type]
    artifact = {"score": round(reports[main].metrics[metric], 4), "score_split": main, "metric": metric, "metrics": metrics,
                **meter.figures()}
    summary = {name: {"n": r.n, **{k: round(v, 4) for k, v in r.metrics.items()},
                      "recall": {k: round(v, 3) for k, v in r.per_label_recall.items()}} for name, r in reports.items()}
    return observation(summary), artifact
