"""Tool: evaluate the student on real held-out data and on the demonstrations, and analyse its failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine import students
from p2m_engine.eval.analysis import analyze_failures, write_failures
from p2m_engine.data.datasets import load_examples
from p2m_engine.errors import TrainingError
from p2m_engine.types import MAIN_METRIC
from tools.context import Meter, ToolContext, observation, spec_of


# Fewer held-back rows than this are too few to decide on; the demonstrations are used then.
MIN_VAL_DECISION = 10


def decision_split(splits: dict[str, Any]) -> str:
    """The split the build decides on: the real dev split when there is one; else the held-back validation rows
    (synthetic when nothing was retrieved; fixed across iterations, so their scores compare) when there are
    enough; else the demonstrations. A handful of demonstrations cannot confirm a target.

    Never the test split: the test score is reported, not tuned on.
    """
    if "dev" in splits:
        return "dev"
    return "val" if len(splits.get("val", ())) >= MIN_VAL_DECISION else "demos"


@tool(response_format="content_and_artifact")
def evaluate_model(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
    """Score the trained student on examples it never trained on: the dev split (real, held out from the
    retrieved dataset, used for the build's decisions), the test data (the test file, or the retrieved
    dataset's held-out split; reported, never decided on), the user's demonstrations, and the validation rows
    held back from the training data (synthetic when nothing was retrieved; decided on when there is no dev
    split).

    Returns the task type's metrics for each split (accuracy, macro-F1 and per-label recall for classification;
    exact match and F1 for extractive QA; chrF++ and exact match for generation), and for classification the
    weak labels and confusions on the decision split.
    """
    ctx: ToolContext = runtime.context
    state = runtime.state
    meter = Meter(None)
    if not state.get("model_dir"):
        raise TrainingError("No trained model yet. Call train_model first.")
    model_dir = Path(state["model_dir"])
    spec = spec_of(state)
    iteration = int(state.get("iteration") or 1)
    splits = {"demos": list(spec.examples)}
    dev_path = ctx.run.data("dev")
    if dev_path.is_file():
        splits["dev"] = load_examples(dev_path)
    val_path = ctx.run.data("val")
    if val_path.is_file() and val_path.stat().st_size:
        splits["val"] = load_examples(val_path)  # held back from training: reported apart from the real splits
    test_path = ctx.test_path or ctx.run.data("test")
    if test_path.is_file():
        splits["test"] = load_examples(test_path)
    folder = ctx.run.path("iterations", str(iteration), "predictions")
    reports = {name: students.evaluate_student(spec.task_type, model_dir, rows, name, folder / f"{name}.jsonl")
               for name, rows in splits.items()}
    metrics: dict[str, Any] = {name: r.to_dict() for name, r in reports.items()}
    metrics["val_score"] = state.get("val_score")
    ctx.run.write_json(f"iterations/{iteration}/metrics.json", metrics)
    main = "test" if "test" in reports else "demos"
    metric = MAIN_METRIC[spec.task_type]
    decide_on = decision_split(splits)
    artifact = {"score": round(reports[main].metrics[metric], 4), "score_split": main, "metric": metric,
                "metrics": metrics, "iteration": iteration, "predictions_dir": str(folder),
                "decision_score": round(reports[decide_on].metrics[metric], 4), "decision_split": decide_on,
                "decision_n": reports[decide_on].n, **meter.figures()}
    summary: dict[str, Any] = {name: {"n": r.n, **{k: round(v, 4) for k, v in r.metrics.items()},
                                      "recall": {k: round(v, 3) for k, v in r.per_label_recall.items()}}
                               for name, r in reports.items()}
    summary["decision_split"] = decide_on
    if spec.labels:
        failures = analyze_failures(folder / f"{decide_on}.jsonl", spec.labels, split=decide_on, threshold=ctx.target)
        saved = write_failures(failures, ctx.run.path("iterations", str(iteration), "failures.json"))
        artifact |= {"failures_path": str(saved), "failures": failures.summary(),
                     "weak_labels": list(failures.weak_labels)}
        summary["failures"] = failures.summary()
    return observation(summary), artifact
