"""Tool: find a base model for the student."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine import models
from tools.context import Meter, ToolContext, observation, spec_of


@tool(response_format="content_and_artifact")
def search_models(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
    """Find base models that can be fine-tuned into the student for this task on this machine.

    Only models that load offline here are offered; the first is taken. Returns the candidates.
    """
    ctx: ToolContext = runtime.context
    meter = Meter(None)
    cands = models.search_models(spec_of(runtime.state).task_type, student=ctx.student)
    ctx.run.write_json("models.json", [c.summary() for c in cands])
    artifact = {"candidates": [c.summary() for c in cands], "base_model": cands[0].path,
                "base_model_name": cands[0].name, "params": cands[0].params, **meter.figures()}
    return observation({"base_model": cands[0].name, "candidates": [c.name for c in cands]}), artifact
