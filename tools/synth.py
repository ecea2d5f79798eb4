"""Tool: generate labelled training examples with the teacher LLM."""

from __future__ import annotations

import dataclasses
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine import pairs, synth
from p2m_engine.errors import LLMError
from p2m_engine.runs import read_jsonl
from tools.context import Meter, ToolContext, observation, spec_of


def held_out_inputs(ctx: ToolContext) -> list[str]:
    """Inputs of the real test data: generated data must never copy them."""
    path = ctx.test_path or ctx.run.dir / "data" / "test.jsonl"
    return [str(r.get("input", "")) for r in read_jsonl(path)] if path.is_file() else []


@tool(response_format="content_and_artifact")
def generate_examples(runtime: ToolRuntime, per_label: int = 0) -> tuple[str, dict[str, Any]]:
    """Generate synthetic training examples with the teacher LLM: for classification a batch per label at a time;
    for other tasks new inputs first, then each input's output by majority vote of several teacher answers.

    Args:
        per_label: how many examples each label should have in total (0: the run's default); a task without
            labels gets five times this many examples in total.

    Returns the count (per label for classification), what the filters dropped (duplicates, refusals, leaks,
    split votes...) and why generation stopped short of its target, if it did.
    """
    ctx: ToolContext = runtime.context
    if ctx.llm is None:
        raise LLMError("No LLM is configured, so examples cannot be generated.")
    meter = Meter(ctx.llm)
    config = ctx.synth if per_label <= 0 else dataclasses.replace(ctx.synth, per_label=per_label)
    spec = spec_of(runtime.state)
    out_path = ctx.run.path("data", "generated.jsonl")
    if spec.task_type == "classification":
        result = synth.generate_examples(spec, ctx.llm, out_path, config, exclude=held_out_inputs(ctx),
                                         progress=ctx.report("generate_examples"))
    else:
        pairs_config = pairs.PairsConfig(n=config.per_label * pairs.PAIRS_PER_LABEL_BUDGET, seed=config.seed)
        result = pairs.generate_pairs(spec, ctx.llm, out_path, pairs_config, exclude=held_out_inputs(ctx),
                                      progress=ctx.report("generate_examples"))
    artifact = {"generated": result.count, "per_label": result.per_label, "dropped": result.dropped,
                "stopped_labels": list(result.stopped), "path": str(result.path), **meter.figures()}
    return observation({k: artifact[k] for k in ("generated", "per_label", "dropped", "stopped_labels")}), artifact
