"""What every tool may read from the run: set by the caller, never chosen by the LLM."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from p2m_engine.data.labelling import LabelConfig
from p2m_engine.llm import LLM
from p2m_engine.runs import Run
from p2m_engine.data.synth import SynthConfig
from p2m_engine.students.train import TrainConfig

# A tool's observation for the planner is cut to this many characters.
MAX_OBSERVATION_CHARS = 2000


class ProgressSink(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


@dataclass(kw_only=True)
class ToolContext:
    """Run-scoped settings and handles the tools use (passed as the graph's runtime context)."""

    run: Run
    llm: LLM | None = None
    hub_dirs: list[Path] = field(default_factory=list)
    catalog_dir: Path | None = None
    """A folder with the offline Hugging Face dataset catalog (hf_dataset_index.json), searched beside the hub."""
    test_path: Path | None = None
    base_model: str | None = None
    """The model folder the user chose to fine-tune (--base-model); None: search_models picks one."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    labelling: LabelConfig = field(default_factory=LabelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    max_retrieved: int = 1000
    unlabelled: Path | None = None
    """The user's file of the task's own inputs without labels (--unlabelled): labelled with hub text, first."""
    progress: ProgressSink | None = None
    target: float = 0.9
    """The decision score the build aims for; a label whose recall is below it counts as weak."""
    teacher_weights: Path | None = None
    """The teacher's own weights when they are local (a GGUF file or a causal LM folder): a generative or QA
    student may start from them (p2m_engine.students.student_choice.keep_better_generator, keep_better_reader)."""

    def report(self, stage: str) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        sink = self.progress
        return lambda done, total: sink(stage, done, total)


class Meter:
    """Measures a tool call: wall time and the LLM calls, tokens and money it spent."""

    def __init__(self, llm: LLM | None) -> None:
        self.llm = llm
        self.t0 = time.monotonic()
        self.calls0 = llm.usage.calls if llm else 0
        self.prompt0 = llm.usage.prompt_tokens if llm else 0
        self.completion0 = llm.usage.completion_tokens if llm else 0

    def figures(self) -> dict[str, Any]:
        if self.llm is None:
            return {"duration_s": round(time.monotonic() - self.t0, 2), "llm_calls": 0, "tokens": 0, "cost_usd": 0.0}
        prompt = self.llm.usage.prompt_tokens - self.prompt0
        completion = self.llm.usage.completion_tokens - self.completion0
        return {
            "duration_s": round(time.monotonic() - self.t0, 2),
            "llm_calls": self.llm.usage.calls - self.calls0,
            "tokens": prompt + completion,
            "cost_usd": self.llm.cost_usd(prompt, completion),  # None when the price is unknown, never a made-up 0
        }


def observation(summary: dict[str, Any]) -> str:
    """The compact JSON text the planner reads, truncated to a fixed budget."""
    text = json.dumps(summary, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_OBSERVATION_CHARS else text[: MAX_OBSERVATION_CHARS - 3] + "..."
