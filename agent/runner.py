"""Run the build graph for one run folder, streaming trace events to disk as they happen."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from agent.context import Context
from agent.graph import build_graph
from agent.trace import TraceWriter
from p2m_engine.types import TaskSpec

OnUpdate = Callable[[str, dict[str, Any]], None]


def run_build(spec: TaskSpec, ctx: Context, trace: TraceWriter, on_update: OnUpdate | None = None,
              graph: Any = None) -> dict[str, Any]:
    """Run a build to its end and return the final state.

    The checkpointer (SQLite in the run folder) records every completed step, so that a crashed build
    can continue from its last step with the same thread id (the run id).
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(ctx.run.dir / "checkpoints.sqlite"), check_same_thread=False)
    try:
        g = graph or build_graph(checkpointer=SqliteSaver(conn))
        config = {"configurable": {"thread_id": ctx.run.id}, "recursion_limit": 4 * ctx.max_steps + 10}
        for update in g.stream({"task": spec.to_dict()}, config, context=ctx, stream_mode="updates", durability="sync"):
            for node, delta in update.items():
                if not isinstance(delta, dict):
                    continue
                if delta.get("trace"):
                    trace.write(delta["trace"])
                if on_update:
                    on_update(node, delta)
        return dict(g.get_state(config).values)
    finally:
        conn.close()
