"""One build from the command line: make the run folder, open the LLM, run the graph, write the results."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from agent.budget import Budget
from agent.context import Context
from agent.llms import LLMSettings, open_llm
from agent.runner import run_build
from agent.trace import TraceWriter
from agent.ui import BuildDisplay
from p2m_engine.card import write_model_card
from p2m_engine.runs import Run
from p2m_engine.synth import SynthConfig
from p2m_engine.train import TrainConfig
from p2m_engine.types import TaskSpec


def build_model(spec: TaskSpec, prompt: str, *, backend: str, model: str | None, base_url: str | None,
                hubs: list[Path], test_path: Path | None, out: Path, limits: Budget, planner: str,
                student: str | None, seed: int, quiet: bool = False,
                catalog: Path | None = None) -> dict[str, Any]:
    """Run one build end to end and return its summary (also written to run/summary.json)."""
    started = time.monotonic()
    run = Run.create(out, spec.instruction)
    api_key = os.environ.get("OPENAI_API_KEY") if backend == "openai" else None
    settings = LLMSettings(backend=backend, model=model, base_url=base_url, api_key=api_key)
    lead = planner if planner != "auto" else ("llm" if backend == "openai" else "rules")
    synth = SynthConfig(per_label=limits.per_label, seed=seed)
    train = TrainConfig(epochs=limits.epochs, seed=seed)
    run.write_json("task.json", spec.to_dict())
    run.write_json("config.json", {
        "prompt": prompt if len(prompt) < 300 else prompt[:300] + "...", "llm": settings.describe(), "planner": lead,
        "hub": [str(h) for h in hubs], "catalog": str(catalog) if catalog else None,
        "test": str(test_path) if test_path else None, "budget": dataclasses.asdict(limits),
        "synth": dataclasses.asdict(synth), "train": dataclasses.asdict(train), "student": student, "seed": seed,
    })
    display = BuildDisplay(run, quiet=quiet)
    trace = TraceWriter(run.dir, run.id, secrets=[api_key or ""])
    with open_llm(settings, run.dir / "logs", want_planner=lead == "llm") as (llm, planner_model), display:
        ctx = Context(run=run, llm=llm, hub_dirs=hubs, catalog_dir=catalog, test_path=test_path, student=student,
                      synth=synth, train=train, max_retrieved=limits.retrieved, progress=display.progress, planner=lead,
                      planner_model=planner_model, max_steps=limits.steps)
        state = run_build(spec, ctx, trace, on_update=display.update)
        usage = llm.usage.to_dict()
        teacher = llm.model
    summary = {
        "run": str(run.dir), "finish_reason": state.get("finish_reason"), "score": state.get("score"),
        "metrics": state.get("metrics"), "dataset": state.get("dataset"), "retrieved": state.get("retrieved", 0),
        "generated": state.get("generated", 0), "per_label": state.get("per_label", {}),
        "base_model": state.get("base_model_name"), "model_dir": state.get("model_dir"),
        "val_accuracy": state.get("val_accuracy"), "steps": state.get("steps", 0), "llm_usage": usage,
        "teacher": teacher, "wall_s": round(time.monotonic() - started, 1),
    }
    if state.get("model_dir"):
        write_model_card(Path(state["model_dir"]), spec, summary)
    run.write_json("summary.json", summary)
    display.summary(summary)
    return summary
