"""Tools: generate labelled training examples with the teacher LLM, for every label or for the weak ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine.data import pairs, synth
from p2m_engine.eval.analysis import read_failures
from p2m_engine.errors import LLMError, TrainingError
from p2m_engine.runs import read_jsonl
from p2m_engine.types import generation_total
from tools.context import Meter, ToolContext, observation
from tools.contracts import StateView


def _inputs(path: Path) -> list[str]:
    return [str(r.get("input", "")) for r in read_jsonl(path)] if path.is_file() else []


def real_per_label(ctx: ToolContext) -> dict[str, int]:
    """Rows per label of the real training data: retrieved rows and the judges' labelled hub text; without
    retrieved rows, every soft-labelled text counts under its most probable label, since the probe student
    learns them all (tools/train.py). The teacher then writes only for labels the hub text leaves short: it
    took 9-11 of emotion's and trec's 13-16 build minutes, and the ag_news replay without it lost 0.6 points."""
    def rows(name: str) -> list[dict[str, Any]]:
        return list(read_jsonl(ctx.run.data(name))) if ctx.run.data(name).is_file() else []

    counts: dict[str, int] = {}
    retrieved = rows("retrieved")
    soft = rows("soft_labels") if not retrieved else []
    labelled = rows("labelled") if not soft else []
    outputs = [str(r.get("output")) for r in (*retrieved, *labelled)]
    outputs += [max(r["probs"], key=r["probs"].get) for r in soft if isinstance(r.get("probs"), dict) and r["probs"]]
    for label in outputs:
        counts[label] = counts.get(label, 0) + 1
    return counts


def inputs_of_test(ctx: ToolContext) -> list[str]:
    """Inputs of the real test data (the --test file, or the retrieved dataset's held-out split)."""
    return _inputs(ctx.test_path or ctx.run.data("test"))


def held_out_inputs(ctx: ToolContext) -> list[str]:
    """Inputs of the real test data and of the dev split the build decides on: never training data."""
    return inputs_of_test(ctx) + _inputs(ctx.run.data("dev"))


@tool(response_format="content_and_artifact")
def generate_examples(runtime: ToolRuntime, per_label: int = 0, guidance: str = "",
                      topics: list[str] | None = None, labels: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Generate synthetic labelled examples with the teacher LLM.

    For classification a batch per label at a time, only for what the real rows (retrieved or
    teacher-labelled) leave short of the per-label target; for other tasks new inputs first, then each
    input's output by majority vote of several teacher answers.

    Args:
        per_label: how many examples each label should have in total (0: the run's default); a task without
            labels gets five times this many examples in total.
        guidance: a short text for the teacher's prompt, e.g. "questions that ask what an acronym stands for"
            (classification).
        topics: what the batches are written about, one sampled per batch (default: a built-in list of everyday
            topics), e.g. ["parcel delivery", "bank accounts", "concert tickets"].
        labels: generate only for these of the task's labels (classification; default: every label short of
            its target).

    Returns the count (per label for classification), what the filters dropped (duplicates, refusals, leaks,
    split votes...) and why generation stopped short of its target, if it did.
    """
    ctx: ToolContext = runtime.context
    if ctx.llm is None:
        raise LLMError("No LLM is configured, so examples cannot be generated.")
    meter = Meter(ctx.llm)
    config = ctx.synth if per_label <= 0 else dataclasses.replace(ctx.synth, per_label=per_label)
    spec = StateView.of(runtime.state).task
    out_path = ctx.run.data("generated")
    if spec.task_type == "classification":
        result = synth.generate_labelled_examples(spec, ctx.llm, out_path, config, exclude=held_out_inputs(ctx),
                                         progress=ctx.report("generate_examples"), call_id=runtime.tool_call_id,
                                         have=real_per_label(ctx), guidance=guidance, topics=tuple(topics or ()),
                                         labels=tuple(labels or ()))
    else:
        # Hub inputs the teacher answered (label_texts) count towards the total.
        answered = len(_inputs(ctx.run.data("labelled")))
        pairs_config = pairs.PairsConfig(n=max(0, generation_total(config.per_label) - answered), seed=config.seed,
                                         concurrency=config.concurrency)
        result = pairs.generate_pairs(spec, ctx.llm, out_path, pairs_config, exclude=held_out_inputs(ctx),
                                      progress=ctx.report("generate_examples"), topics=tuple(topics or ()))
    artifact = {"generated": result.count, "per_label": result.per_label, "dropped": result.dropped,
                "stopped_labels": list(result.stopped_labels), "stop_reason": result.stop_reason, "path": str(result.path), **meter.figures()}
    return observation({k: artifact[k] for k in ("generated", "per_label", "dropped", "stop_reason")}), artifact


@tool(response_format="content_and_artifact")
def generate_targeted_examples(runtime: ToolRuntime, per_label: int = 0, guidance: str = "") -> tuple[str, dict[str, Any]]:
    """Generate more examples for the labels the student gets wrong on validation, telling the teacher what the
    student confuses.

    The teacher is shown a few of the student's errors on the validation (dev) split and asked for clear
    examples of each weak label. Needs an evaluated model.

    Args:
        per_label: new examples for each weak label (0: half the run's per-label default).
        guidance: a short text for the teacher's prompt about what the weak labels' examples need.

    Returns the weak labels, the new count per label and what the filters dropped.
    """
    ctx: ToolContext = runtime.context
    view = StateView.of(runtime.state)
    if ctx.llm is None:
        raise LLMError("No LLM is configured, so examples cannot be generated.")
    if not view.failures_path:
        raise TrainingError("No failure analysis yet: call evaluate_model before generate_targeted_examples.")
    meter = Meter(ctx.llm)
    spec = view.task
    report = read_failures(Path(view.failures_path))  # made once, by the evaluation
    before = view.per_label
    result = synth.generate_targeted_examples(spec, ctx.llm, ctx.run.data("generated"), report,
                                              ctx.synth, extra=per_label, exclude=held_out_inputs(ctx),
                                              progress=ctx.report("generate_targeted_examples"),
                                              call_id=runtime.tool_call_id, guidance=guidance)
    added = {k: v - before.get(k, 0) for k, v in result.per_label.items() if v - before.get(k, 0)}
    artifact = {"generated": result.count, "per_label": result.per_label, "added": added,
                "weak_labels": list(report.weak_labels), "decision_split": report.split, "dropped": result.dropped,
                "stopped_labels": list(result.stopped_labels), "stop_reason": result.stop_reason, "path": str(result.path), **meter.figures()}
    return observation({k: artifact[k] for k in ("weak_labels", "added", "per_label", "dropped", "stop_reason")}), artifact
