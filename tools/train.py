"""Tool: train the student on the retrieved and generated data."""

from __future__ import annotations

import dataclasses
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine import students, train
from p2m_engine.datasets import load_examples
from p2m_engine.errors import TrainingError
from p2m_engine.runs import write_jsonl
from p2m_engine.synth import normalize
from p2m_engine.types import Example
from tools.context import Meter, ToolContext, observation, spec_of
from tools.synth import held_out_inputs


def training_examples(ctx: ToolContext, labels: tuple[str, ...], demos: list[str]) -> tuple[list[Example], dict[str, int]]:
    """Retrieved + teacher-labelled + generated examples, deduplicated, with test inputs and demonstrations removed.

    With a label set (classification), rows whose output is not a label are dropped.
    """
    banned = {normalize(x) for x in [*held_out_inputs(ctx), *demos]}
    seen: set[str] = set()
    rows: list[Example] = []
    sources: dict[str, int] = {}
    for name in ("retrieved", "labelled", "generated"):
        path = ctx.run.dir / "data" / f"{name}.jsonl"
        if not path.is_file() or path.stat().st_size == 0:
            continue
        for e in load_examples(path):
            key = normalize(e.input)
            if (not labels or e.output in labels) and key not in banned and key not in seen:
                seen.add(key)
                rows.append(e)
                sources[name] = sources.get(name, 0) + 1
    return rows, sources


def training_split(ctx: ToolContext, rows: list[Example], stratify: bool) -> tuple[list[Example], list[Example]]:
    """Train and validation rows. The validation rows of the run's first training stay the validation rows
    (new data goes to training), so the validation scores of all iterations are measured on the same examples."""
    val_path = ctx.run.dir / "data" / "val.jsonl"
    if val_path.is_file() and val_path.stat().st_size:
        keys = {normalize(e.input) for e in load_examples(val_path)}
        val = [e for e in rows if normalize(e.input) in keys]
        if val:
            return [e for e in rows if normalize(e.input) not in keys], val
    return train.split_validation(rows, seed=ctx.train.seed, stratify=stratify)


@tool(response_format="content_and_artifact")
def train_model(runtime: ToolRuntime, epochs: float = 0) -> tuple[str, dict[str, Any]]:
    """Fine-tune the student on all retrieved and generated examples; keep the epoch best on validation.

    Call it again after an evaluation to retrain (with more epochs when the student is under-trained).

    Args:
        epochs: passes over the data (0: the run's default).

    Returns the training loss, the validation accuracy (on held-back training-like data) and the counts.
    """
    ctx: ToolContext = runtime.context
    state = runtime.state
    meter = Meter(None)
    spec = spec_of(state)
    if not state.get("base_model"):
        raise TrainingError("No base model yet. Call search_models first.")
    rows, sources = training_examples(ctx, spec.labels, [e.input for e in spec.examples])
    if not rows:
        raise TrainingError("No training data yet. Call search_datasets or generate_examples first.")
    tr, val = training_split(ctx, rows, stratify=spec.task_type == "classification")
    write_jsonl(ctx.run.path("data", "train.jsonl"), (e.to_dict() for e in tr))
    write_jsonl(ctx.run.path("data", "val.jsonl"), (e.to_dict() for e in val))
    config = dataclasses.replace(ctx.train, base_model=state["base_model"], **({"epochs": epochs} if epochs > 0 else {}))
    # Every training gets its own folder: the build keeps the best one, not the last one.
    iteration = int(state.get("iteration") or 0) + 1
    folder = f"iterations/{iteration}/model"
    result = students.train_student(spec, tr, val, ctx.run.path(folder), config, progress=ctx.report("train_model"))
    # The model folder says what it is, so that predict/serve work on it when it is copied out of the run.
    ctx.run.write_json(f"{folder}/p2m_task.json", spec.to_dict())
    ctx.run.write_json(f"{folder}/p2m_train.json", {**result.config, "sources": sources, "n_train": result.n_train,
                                                    "n_val": result.n_val, "train_loss": result.train_loss,
                                                    "val_accuracy": result.val_score})
    artifact = {"model_dir": str(result.model_dir), "iteration": iteration, "train_loss": round(result.train_loss, 4),
                "val_accuracy": round(result.val_score, 4), "n_train": result.n_train, "n_val": result.n_val,
                "sources": sources, "epochs": result.epochs, "bf16": result.config.get("bf16_used"), **meter.figures()}
    return observation({k: artifact[k] for k in ("train_loss", "val_accuracy", "n_train", "n_val", "sources")}), artifact
