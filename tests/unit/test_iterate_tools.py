"""The build loop with the real tools and a tiny student: a real dev split disjoint from test, failure
analysis on it, targeted generation, one folder per iteration, and the best one exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from agent.graph import build_graph
from p2m_engine.runs import Run, read_jsonl
from p2m_engine.data.synth import SynthConfig, normalize
from p2m_engine.task import parse_task
from p2m_engine.students.train import TrainConfig
from tests.conftest import DEMO_HUB, ROOT
from tests.fakes import FakeLLM


def _teacher(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
    label = "spam" if 'label is "spam"' in messages[-1]["content"] else "ham"
    return {"inputs": [f"{label} message {i} number {k} about thing {i * 7 + k}" for k in range(3)]}


def test_real_tools_iterate_on_dev_and_export_the_best(tmp_path: Path, tiny_encoder: Path) -> None:
    spec = parse_task((ROOT / "examples" / "sms_spam.txt").read_text())
    llm = FakeLLM(_teacher)
    ctx = Context(run=Run.create(tmp_path, "t"), llm=llm, hub_dirs=[DEMO_HUB], base_model=str(tiny_encoder),
                  synth=SynthConfig(per_label=26, batch_size=3),
                  train=TrainConfig(epochs=1, bf16="off", batch_size=8, min_steps=4), max_retrieved=40,
                  target=0.999, max_iterations=2, max_steps=12)
    graph = build_graph(checkpointer=InMemorySaver())
    state = dict(graph.invoke({"task": spec.to_dict()}, {"configurable": {"thread_id": "t"}, "recursion_limit": 100},
                              context=ctx))
    run = ctx.run.dir
    tools = [e["name"] for e in state["trace"] if e["kind"] == "tool"]
    assert tools == ["search_datasets", "search_models", "generate_examples", "train_model", "evaluate_model",
                     "generate_targeted_examples", "train_model", "evaluate_model"]
    assert all(e["ok"] for e in state["trace"] if e["kind"] == "tool")
    assert state["finish_reason"].startswith("budget: 2 iterations")

    # The dev split is real, held out of the retrieved rows, disjoint from test, demos and training data.
    keys = {name: {normalize(r["input"]) for r in read_jsonl(run / "data" / f"{name}.jsonl")}
            for name in ("dev", "test", "retrieved", "train")}
    assert 0 < len(keys["dev"]) <= 300
    assert not keys["dev"] & keys["test"] and not keys["dev"] & keys["retrieved"] and not keys["dev"] & keys["train"]
    assert not keys["dev"] & {normalize(e.input) for e in spec.examples}

    # Every decision after the first evaluation was made on dev; the test score is only reported.
    iterations = [e for e in state["trace"] if e["kind"] == "iteration"]
    assert [r["decision_split"] for r in iterations] == ["dev", "dev"] and iterations[0]["decision_n"] == len(keys["dev"])
    assert all(r["score_split"] == "test" for r in iterations)

    # Targeted generation worked on the weak labels of dev, with the confusions in the teacher's prompt.
    generated = list(read_jsonl(run / "data" / "generated.jsonl"))
    targeted = [r for r in generated if r.get("targeted")]
    weak = iterations[0]["weak_labels"]
    assert targeted and {r["output"] for r in targeted} <= set(weak)
    assert all(r["template"] == "generate_targeted_examples" for r in targeted)
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    assert any("The student model confuses" in p or "the student got them wrong" in p for p in prompts)

    # One folder per iteration; the best by dev score is exported with its metrics and predictions.
    assert (run / "iterations" / "1" / "model" / "config.json").is_file()
    assert (run / "iterations" / "2" / "model" / "config.json").is_file()
    best = state["best_iteration"]
    scores = [r["decision_score"] for r in iterations]
    assert scores[best - 1] == max(scores) and state["best_score"] == max(scores)
    assert state["model_dir"] == str(run / "model") and (run / "model" / "config.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads((run / "iterations" / str(best) / "metrics.json").read_text())
    assert state["score"] == round(metrics["test"]["metrics"]["accuracy"], 4)
    assert (run / "predictions" / "test.jsonl").read_bytes() == (
        run / "iterations" / str(best) / "predictions" / "test.jsonl").read_bytes()


def test_without_retrieved_data_the_build_decides_on_fixed_held_back_rows(tmp_path: Path, tiny_encoder: Path) -> None:
    from p2m_engine.eval.iteration import MIN_VAL_DECISION, decision_split

    spec = parse_task((ROOT / "examples" / "sms_spam.txt").read_text())
    # A test file of nothing but the demonstrations: no held-out split is left once they are dropped.
    demos_only = tmp_path / "demos_only.jsonl"
    demos_only.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in spec.examples))
    ctx = Context(run=Run.create(tmp_path, "t"), llm=FakeLLM(_teacher), hub_dirs=[], base_model=str(tiny_encoder),
                  test_path=demos_only, synth=SynthConfig(per_label=36, batch_size=3),
                  train=TrainConfig(epochs=1, bf16="off", batch_size=8, min_steps=4), target=0.999, max_iterations=2,
                  max_steps=14)
    graph = build_graph(checkpointer=InMemorySaver())
    state = dict(graph.invoke({"task": spec.to_dict()}, {"configurable": {"thread_id": "t"}, "recursion_limit": 100},
                              context=ctx))
    run = ctx.run.dir
    iterations = [e for e in state["trace"] if e["kind"] == "iteration"]
    assert len(iterations) == 2 and state["generated"] > 72  # targeted examples were added for iteration 2
    # Two 36-example labels: 15% of each is held back, enough to decide on, and the same rows both times.
    val = [r["input"] for r in read_jsonl(run / "data" / "val.jsonl")]
    assert len(val) >= MIN_VAL_DECISION
    assert [(r["decision_split"], r["decision_n"]) for r in iterations] == [("val", len(val))] * 2
    train = {normalize(r["input"]) for r in read_jsonl(run / "data" / "train.jsonl")}
    assert not train & {normalize(x) for x in val}
    for k in (1, 2):
        metrics = json.loads((run / "iterations" / str(k) / "metrics.json").read_text())
        assert metrics["val"]["n"] == len(val) and metrics["demos"]["n"] == len(spec.examples)
        assert "test" not in metrics and metrics["demos_dropped"] == {"test": len(spec.examples)}
    # Too few held-back rows: the demonstrations decide; a real dev split always wins.
    assert decision_split({"demos": [1], "val": [1] * (MIN_VAL_DECISION - 1)}) == "demos"
    assert decision_split({"demos": [1], "val": [1] * MIN_VAL_DECISION, "dev": [1]}) == "dev"
