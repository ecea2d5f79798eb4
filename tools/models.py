"""Tool: find a base model for the student."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine.students import model_catalog, models
from tools.context import Meter, ToolContext, observation
from tools.contracts import StateView


@tool(response_format="content_and_artifact")
def search_models(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
    """Find a base model for the student: one that can be fine-tuned for this task on this machine.

    Only models that load here are offered. With a model catalog (hf_models.jsonl in the --catalog folder),
    the teacher writes a hypothetical model card for the task and the catalog is searched with it; a catalog
    model that can be loaded here is preferred, the others are listed with the reason they cannot be used.
    Otherwise the smallest loadable model is taken. Returns the candidates.
    """
    ctx: ToolContext = runtime.context
    meter = Meter(ctx.llm)
    spec = StateView.of(runtime.state).task
    cands = models.search_models(spec.task_type, base_model=ctx.base_model)
    chosen = cands[0]
    hits: list[model_catalog.CatalogHit] = []
    catalog = ctx.catalog_dir / model_catalog.CATALOG_FILE if ctx.catalog_dir else None
    if catalog is not None and catalog.is_file() and not ctx.base_model:
        query = model_catalog.hypothetical_card(spec, ctx.llm)
        hits = model_catalog.search_model_catalog(spec, catalog, query=query, loadable={c.name for c in cands},
                                            max_params=models.MAX_PARAMS)
        usable = next((h for h in hits if h.usable), None)
        if usable is not None:
            chosen = next(c for c in cands if c.name == usable.model.name)
    listed = [c.summary() for c in cands] + [h.summary() for h in hits]
    ctx.run.write_json("models.json", listed)
    artifact = {"candidates": listed, "loadable": {c.name: c.path for c in cands}, "base_model": chosen.path,
                "base_model_name": chosen.name,
                "params": chosen.params, **meter.figures()}
    return observation({"base_model": chosen.name, "candidates": [c["name"] for c in listed][:10]}), artifact
