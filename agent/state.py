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
    tried: Annotated[list[str], operator.add]
    """Names of every tool call made, completed or failed, in order (the policy counts attempts on it)."""
    steps: int
    """Tool calls made so far (the step budget counts these)."""
    dataset: str | None
    """Name of the retrieved dataset in use, if any."""
    retrieved: int
    """Retrieved training examples on disk."""
    labelled: int
    """Hub texts labelled by the judges (label_texts), on disk."""
    real_per_label: dict[str, int]
    """Real training rows per label (retrieved and teacher-labelled): generation fills only what they lack."""
    retrieved_per_label: dict[str, int]
    """The retrieved rows among them, per label."""
    model_candidates: dict[str, str]
    """Loadable base models the model search found, name -> folder: the names a planner may train from."""
    dataset_candidates: list[str]
    """Usable datasets the last search found: the names a planner's mix may take (search_datasets `mix`)."""
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
    val_score: float | None
    """Accuracy of the current model on its (training-like) validation split."""
    evaluated: bool
    """Whether the current model has been evaluated."""
    score: float | None
    """Test score of the current model on real held-out data (reported; decisions never read it)."""
    metrics: dict[str, Any] | None
    """The last evaluation's figures."""
    finish_reason: str | None
    """Why the build stopped ("target met", "plateau", "budget: ...", ...)."""
    iteration: int
    """Trainings so far; the current model is iteration `iteration` (its files are under iterations/<n>/)."""
    epochs: float | None
    """Epochs the current model was trained for."""
    decision_split: str | None
    """The real split decisions are made on: "dev" (held out from the retrieved dataset) or "demos". Never test."""
    decision_score: float | None
    """Accuracy of the current model on the decision split."""
    failures: str | None
    """Summary of the current model's failures on the decision split (weak labels, confusions)."""
    failures_path: str | None
    """The failure analysis of the current model on the decision split (failures.json), which targeted generation reads."""
    weak_labels: list[str]
    """Labels of the current model whose recall on the decision split is below the mean or the target."""
    history: Annotated[list[dict[str, Any]], operator.add]
    """One record per evaluated iteration: its decision score, test score, model folder, weak labels."""
    best_model_dir: str | None
    """Folder of the best model so far by decision score; finish exports it."""
    best_score: float | None
    """Decision score of that model."""
    best_iteration: int | None
    """Iteration of that model."""
    targeted_at: int | None
    """Iteration whose failures the last targeted generation worked on (not repeated before retraining)."""
    targeted_stalled: bool
    """The last targeted generation added nothing: asking again the same way is futile."""
    clarified: bool
    """clarify_task has run (questions asked and the plan approved, or nothing to ask outside a chat)."""
    declined: str | None
    """Why the user did not consent to the build in a chat (the graph then ends with nothing built)."""
    extra_per_label: int
    """How many times the user asked for more examples in a chat: each raises the generation target."""
