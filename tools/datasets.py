"""Tool: search the dataset hub and take the best-fitting real dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine.data import datasets, retrieval
from p2m_engine.data.probe import balanced
from p2m_engine.runs import write_jsonl
from p2m_engine.data.synth import normalize
from p2m_engine.students.train import split_validation
from tools.context import Meter, ToolContext, observation
from tools.contracts import StateView
from tools.synth import inputs_of_test

# The dev split: this share of the retrieved rows, at most DEV_MAX of them (it is scored every iteration).
DEV_FRACTION = 0.15
DEV_MAX = 300


@tool(response_format="content_and_artifact")
def search_datasets(runtime: ToolRuntime, mix: dict[str, int] | None = None) -> tuple[str, dict[str, Any]]:
    """Search the dataset hub for real labelled data that fits the task (again, with a mix: take those usable
    datasets, that many rows of each, instead of the search's own choice).

    The hub is the --hub folders, and the Hub catalog when one is given.

    Candidates are ranked by similarity; for classification each plausible one is tested with a probe on the
    demonstrations and every one near the best is taken (for other task types the teacher LLM reranks and
    the first usable one is taken). The rows are capped and label-balanced per dataset, labels mapped onto
    the task's, except a small real dev split held out for the build's decisions; the best dataset's
    held-out split becomes real test data when no test file was given. Returns every candidate with its
    similarity, its probe score or rerank votes and why it was taken or rejected.

    Called again with a `mix` (dataset name -> rows), it takes those usable candidates instead, that many rows
    of each (label-balanced), in place of what the first search took.
    """
    ctx: ToolContext = runtime.context
    meter = Meter(ctx.llm)
    spec = StateView.of(runtime.state).task
    found = retrieval.find_dataset(spec, ctx.hub_dirs, llm=ctx.llm, catalog_dir=ctx.catalog_dir, k=5, avoid=ctx.test_path)
    cands, taken = found.candidates, found.taken
    if mix:
        cands, taken = _mixed(cands, mix)
    ctx.run.write_json("datasets.json", {"candidates": [c.summary() for c in cands], "rerank": found.rerank,
                                         "label_mappings": list(found.label_mappings), "probes": found.probes,
                                         "taken": [c.name for c in taken]})
    retrieved, dev, test_from = 0, 0, None
    skipped: list[str] = []
    by_source: dict[str, int] = {}
    if taken:
        best = Path(taken[0].path)
        held = datasets.held_out_split(best, datasets.train_file(taken[0]))
        if ctx.test_path is None and held is not None:
            test_rows = datasets.load_examples(held, taken[0].label_map, skipped=skipped)
            write_jsonl(ctx.run.data("test"), (e.to_dict() for e in test_rows))
            test_from = str(held)
        # Leakage guard: no training row may equal a test row or a demonstration.
        banned = {normalize(x) for x in [*inputs_of_test(ctx), *(e.input for e in spec.examples)]}
        # Repeated texts are kept once (the first), so that no text can land on both sides of the dev split.
        unique: dict[str, tuple[Any, str]] = {}
        for c in taken:
            rows = datasets.load_examples(datasets.train_file(c), c.label_map, skipped=skipped)  # type: ignore[arg-type]
            for r in rows:
                if normalize(r.input) not in banned:
                    unique.setdefault(normalize(r.input), (r, c.name))
        source_of = {id(r): name for r, name in unique.values()}
        rows = [r for r, _ in unique.values()]
        # A real dev split, disjoint from the test data and never trained on: the build's decisions
        # (iterate or stop, which model is best) are made on it, never on the test data.
        rows, dev_rows = split_validation(rows, fraction=min(DEV_FRACTION, DEV_MAX / max(len(rows), 1)), seed=ctx.train.seed,
                                          stratify=spec.task_type == "classification")
        if dev_rows:
            dev = write_jsonl(ctx.run.data("dev"),
                              ({**e.to_dict(), "source": source_of[id(e)]} for e in dev_rows))
        # Each dataset gets an equal share of the cap (or its rows in the mix), label-balanced within it.
        share = {c.name: (mix or {}).get(c.name) or max(1, ctx.max_retrieved // len(taken)) for c in taken}
        kept = [r for c in taken for r in balanced([r for r in rows if source_of[id(r)] == c.name], share[c.name])]
        for r in kept:
            by_source[source_of[id(r)]] = by_source.get(source_of[id(r)], 0) + 1
        retrieved = write_jsonl(ctx.run.data("retrieved"),
                                ({**e.to_dict(), "source": source_of[id(e)]} for e in kept))
    names = [c.name for c in taken]
    artifact = {
        "candidates": [c.summary() for c in cands],
        "usable": [c.name for c in cands if c.fits],
        "mix": dict(mix or {}),
        "dataset": ", ".join(names) if names else None,
        "datasets": names,
        "label_map": taken[0].label_map if taken else None,
        "rerank": found.rerank,
        "probes": found.probes,
        "label_mappings": list(found.label_mappings),
        "retrieved": retrieved,
        "retrieved_by_source": by_source,
        "retrieved_per_label": dict(Counter(r.output for r in kept)) if taken else {},
        "dev": dev,
        "test_from": test_from,
        "malformed_lines": skipped[:20],
        "skipped_lines": len(skipped),
        **meter.figures(),
    }
    summary = {"datasets": names, "retrieved": retrieved, "by_source": by_source, "dev": dev, "test_from": test_from,
               "candidates": [{"name": c.name, "score": round(c.score, 3), "votes": c.votes, "fit": c.reason}
                              for c in cands]}
    return observation(summary), artifact


def _mixed(cands: tuple[Any, ...], mix: dict[str, int]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The candidates with the mix's choice recorded on each, and the usable ones the mix names (search order)."""
    import dataclasses

    out, taken = [], []
    for c in cands:
        rows = mix.get(c.name, 0)
        if rows > 0 and c.fits:
            c = dataclasses.replace(c, reason=f"taken by the planner's mix ({rows} rows); search said: {c.reason}")
            taken.append(c)
        elif c.fits:
            c = dataclasses.replace(c, reason=f"not in the planner's mix; search said: {c.reason}")
        out.append(c)
    return tuple(out), tuple(taken)
