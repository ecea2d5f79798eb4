"""The build graph: clarify_task -> plan -> run_tools -> observe -> plan ... -> finish."""

from __future__ import annotations

from typing import Any, Sequence

from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from agent.clarify import after_clarify, clarify_task
from agent.context import Context
from agent.nodes import finish, observe, plan
from agent.state import InputState, State
from p2m_engine.errors import DatasetError, ModelError, TrainingError

# Errors the planner caused (a dataset that does not fit, training before data) go back to it as an
# observation; every other error ends the run and is shown to the user.
MODEL_CAUSED = (DatasetError, ModelError, TrainingError)


def build_graph(tools: Sequence[Any] | None = None, checkpointer: Any = None) -> Any:
    """Compile the build graph.

    Args:
        tools: the tools the planner may call (default: tools.TOOLS).
        checkpointer: a LangGraph checkpointer (SqliteSaver in a run folder; InMemorySaver in tests).
    """
    if tools is None:
        from tools import TOOLS

        tools = TOOLS
    g = StateGraph(State, context_schema=Context, input_schema=InputState)
    g.add_node("clarify_task", clarify_task)
    g.add_node("plan", plan, destinations=("run_tools", "finish"))
    g.add_node("run_tools", ToolNode(list(tools), handle_tool_errors=MODEL_CAUSED))
    g.add_node("observe", observe)
    g.add_node("finish", finish)
    g.add_edge(START, "clarify_task")
    g.add_conditional_edges("clarify_task", after_clarify, {"plan": "plan", "__end__": END})
    g.add_edge("run_tools", "observe")
    g.add_edge("observe", "plan")
    g.add_edge("finish", END)
    return g.compile(checkpointer=checkpointer)
