"""Run the build graph for one run folder, streaming trace events to disk as they happen; continue a
crashed one from its last checkpoint."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from agent.context import Context
from agent.graph import build_graph
from agent.trace import TraceWriter, read_trace
from p2m_engine.runs import Run
from p2m_engine.types import TaskSpec

OnUpdate = Callable[[str, dict[str, Any]], None]
Ask = Callable[[dict[str, Any]], str]
Converse = Callable[[dict[str, Any]], "dict[str, Any] | None"]
CHECKPOINTS = "checkpoints.sqlite"


@dataclass(frozen=True)
class Checkpoint:
    """Where a run's graph stands: its state and the nodes still to run (none once it has finished)."""

    values: dict[str, Any]
    next: tuple[str, ...]

    @property
    def started(self) -> bool:
        return bool(self.values)

    @property
    def finished(self) -> bool:
        return self.started and not self.next


@contextlib.contextmanager
def _graph(run: Run, graph: Any = None) -> Iterator[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(run.dir / CHECKPOINTS), check_same_thread=False)
    try:
        yield graph or build_graph(checkpointer=SqliteSaver(conn))
    finally:
        conn.close()


def _config(run: Run, max_steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": run.id}, "recursion_limit": 4 * max_steps + 10}


def read_checkpoint(run: Run) -> Checkpoint:
    """The last checkpoint of `run` (empty when the graph never completed a step)."""
    with _graph(run) as g:
        snapshot = g.get_state({"configurable": {"thread_id": run.id}})
        return Checkpoint(dict(snapshot.values), tuple(snapshot.next))


def _written(run: Run) -> int:
    """How many of the state's trace records trace.jsonl already holds (each carries its index `seq`)."""
    return 1 + max((e["seq"] for e in read_trace(run.dir) if isinstance(e.get("seq"), int)), default=-1)


def run_build(spec: TaskSpec, ctx: Context, trace: TraceWriter, on_update: OnUpdate | None = None,
              graph: Any = None, *, resume: bool = False, ask: Ask | None = None,
              converse: Converse | None = None) -> dict[str, Any]:
    """Run a build to its end and return the final state.

    The checkpointer (SQLite in the run folder) records every completed step, so that a crashed build
    can continue from its last step with the same thread id (the run id): with `resume`, the graph
    continues from that checkpoint (a node cut short runs again from its start) and a `resume` event
    is appended to the trace. trace.jsonl mirrors the state's trace records, each written once, even
    when a crash fell between a step's end and its checkpoint.

    Args:
        ask: in a chat, answers the graph's interrupts (clarifying questions, the plan); unattended builds
            have none and the graph never interrupts (ctx.interactive is false).
        converse: in a chat, called with the state each time the graph ends; returns a state update that
            steers the build (it then continues from the planner) or None to stop.
    """
    from langgraph.types import Command

    with _graph(ctx.run, graph) as g:
        config = _config(ctx.run, ctx.max_steps)
        start: Any = {"task": spec.to_dict()}
        if resume:
            snapshot = g.get_state(config)
            if snapshot.values:
                start = None  # continue from the checkpoint
            trace.write([{"kind": "resume", "node": "resume", "step": snapshot.values.get("steps", 0),
                          "name": "resume", "next": list(snapshot.next),
                          "reason": ("continue from the last checkpoint" if snapshot.values
                                     else "no step was checkpointed: start again")}])
        written = _written(ctx.run)
        while True:
            pending, written = _stream(g, start, config, ctx, trace, on_update, written)
            if pending is not None:
                if ask is None:
                    raise RuntimeError("the build asked a question but nobody can answer it (not a chat)")
                start = Command(resume=ask(pending))
                continue
            state = dict(g.get_state(config).values)
            if state.get("declined"):
                return state  # the user refused the plan: nothing was built, nothing to talk about
            update = converse(state) if converse else None
            if not update:
                return state
            # The update's trace records reach trace.jsonl with the next values the graph streams.
            g.update_state(config, update, as_node="observe")
            start = None


def _stream(g: Any, start: Any, config: dict[str, Any], ctx: Context, trace: TraceWriter,
            on_update: OnUpdate | None, written: int) -> tuple[dict[str, Any] | None, int]:
    """Run the graph until it ends or interrupts; return the interrupt's value (if any) and the records written."""
    pending = None
    for mode, chunk in g.stream(start, config, context=ctx, stream_mode=["updates", "values"], durability="sync"):
        if mode == "values":
            records = chunk.get("trace") or []
            if len(records) > written:
                trace.write([{"seq": i, **r} for i, r in enumerate(records[written:], start=written)])
                written = len(records)
            continue
        for node, delta in chunk.items():
            if node == "__interrupt__":
                pending = delta[0].value
            elif on_update and isinstance(delta, dict):
                on_update(node, delta)
    return pending, written
