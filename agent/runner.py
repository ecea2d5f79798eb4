"""Run the build graph for one run folder, streaming trace events to disk as they happen."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from agent.context import Context
from agent.graph import build_graph
from agent.trace import TraceWriter
from p2m_engine.types import TaskSpec

OnUpdate = Callable[[str, dict[str, Any]], None]
Ask = Callable[[dict[str, Any]], str]
Converse = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def run_build(spec: TaskSpec, ctx: Context, trace: TraceWriter, on_update: OnUpdate | None = None,
              graph: Any = None, ask: Ask | None = None, converse: Converse | None = None) -> dict[str, Any]:
    """Run a build to its end and return the final state.

    The checkpointer (SQLite in the run folder) records every completed step, so that a crashed build
    can continue from its last step with the same thread id (the run id).

    Args:
        ask: in a chat, answers the graph's interrupts (clarifying questions, the plan); unattended builds
            have none and the graph never interrupts (ctx.interactive is false).
        converse: in a chat, called with the state each time the graph ends; returns a state update that
            steers the build (it then continues from the planner) or None to stop.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.types import Command

    conn = sqlite3.connect(str(ctx.run.dir / "checkpoints.sqlite"), check_same_thread=False)
    try:
        g = graph or build_graph(checkpointer=SqliteSaver(conn))
        config = {"configurable": {"thread_id": ctx.run.id}, "recursion_limit": 4 * ctx.max_steps + 10}
        inp: Any = {"task": spec.to_dict()}
        while True:
            pending = _stream(g, inp, config, ctx, trace, on_update)
            if pending is not None:
                if ask is None:
                    raise RuntimeError("the build asked a question but nobody can answer it (not a chat)")
                inp = Command(resume=ask(pending))
                continue
            state = dict(g.get_state(config).values)
            update = converse(state) if converse else None
            if not update:
                return state
            trace.write(update.get("trace", []))
            g.update_state(config, update, as_node="observe")
            inp = None
    finally:
        conn.close()


def _stream(g: Any, inp: Any, config: dict[str, Any], ctx: Context, trace: TraceWriter,
            on_update: OnUpdate | None) -> dict[str, Any] | None:
    """Run the graph until it ends or interrupts; return the interrupt's value, if any."""
    pending = None
    for update in g.stream(inp, config, context=ctx, stream_mode="updates", durability="sync"):
        for node, delta in update.items():
            if node == "__interrupt__":
                pending = delta[0].value
                continue
            if not isinstance(delta, dict):
                continue
            if delta.get("trace"):
                trace.write(delta["trace"])
            if on_update:
                on_update(node, delta)
    return pending
