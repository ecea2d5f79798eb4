"""Run-scoped settings of the agent (the graph's runtime context): the tools' context plus the planner's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from p2m_engine.types import TaskSpec
from tools.context import ToolContext


@dataclass(kw_only=True)
class Context(ToolContext):
    """Passed once per run through `context=`; never stored in checkpoints (it holds live clients)."""

    planner: Literal["rules", "llm"] = "rules"
    """Who leads: deterministic rules (default for small local LLMs) or the build's LLM (API models), asked through
    the same client as the teacher, so its calls share the deadline, the cache, the budgets and the cost."""
    max_steps: int = 12
    """Tool calls allowed in one build."""
    interactive: bool = False
    """A chat: clarify_task asks its questions and the plan through interrupts (unattended builds never ask)."""
    max_iterations: int = 3
    """Train-and-evaluate iterations allowed in one build."""
    min_gain: float = 0.01
    """The validation score must rise by at least this over two iterations, or the build has plateaued."""
    max_usd: float | None = None
    """Money allowed for API calls (None: no limit); an LLM action is offered only while some is left."""
    max_llm_calls: int | None = None
    """Teacher LLM calls allowed for generation (None: no limit besides the steps)."""
    tool_arguments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The arguments each tool takes (agent.planner.tool_arguments): what the planner LLM may set, checked by the
    policy. Empty: the planner chooses actions only."""
    record_task: Callable[[TaskSpec], float] | None = None
    """Writes a task edited in chat to the run's records (task.json, config.json) and returns the target its
    metric implies; the chat then sets `target` to it, so that the rest of the build aims for the edited task."""
