"""The graph's state: small, JSON-like, holding ids, paths and figures (never datasets or models)."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph import add_messages
from typing_extensions import TypedDict


class InputState(TypedDict):
    """What a caller supplies."""

    task: dict[str, Any]
    """The TaskSpec as a dict (instruction, examples, task_type, labels)."""


class State(InputState, total=False):
    """Everything the planner and the routers read."""

    messages: Annotated[list[AnyMessage], add_messages]
    """Planner tool calls and tool observations, in order."""
    trace: Annotated[list[dict[str, Any]], operator.add]
    """Append-only decision and tool records (also streamed to trace.jsonl)."""
    done: Annotated[list[str], operator.add]
    """Names of the tool calls that completed, in order."""
    steps: int
    """Tool calls made so far (the step budget counts these)."""
    dataset: str | None
    """Name of the retrieved dataset in use, if any."""
    retrieved: int
    """Retrieved training examples on disk."""
    generated: int
    """Generated training examples on disk."""
    per_label: dict[str, int]
    """Generated examples per label."""
    generation_stalled: bool
    """The last generation stopped some label for lack of new examples: asking again the same way is futile."""
    base_model: str | None
    """Path of the base model the student is trained from."""
    base_model_name: str | None
    """Readable name of that base model."""
    model_dir: str | None
    """Folder of the trained student."""
    trained_on: int
    """retrieved + generated count the current model was trained on."""
    val_accuracy: float | None
    """Accuracy of the current model on its (training-like) validation split."""
    evaluated: bool
    """Whether the current model has been evaluated."""
    score: float | None
    """Main score of the current model on real held-out data."""
    metrics: dict[str, Any] | None
    """The last evaluation's figures."""
    finish_reason: str | None
    """Why the build stopped."""
    clarified: bool
    """clarify_task has run (questions asked and the plan approved, or nothing to ask outside a chat)."""
    extra_per_label: int
    """How many times the user asked for more examples in a chat: each raises the generation target."""
