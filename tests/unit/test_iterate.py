"""The build loop on the real graph with fake tools: iterate while the dev score lags the target, stop on
target, plateau or budget, keep and export the best model, decide on dev and never on test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import ToolRuntime

from agent.context import Context
from agent.graph import build_graph
from p2m_engine.runs import Run
from p2m_engine.data.synth import SynthConfig
from tests.fakes import FakeLLM, choose, offered, planner

TASK = {"instruction": "Is this SMS spam or ham?", "examples": [{"input": "win cash now", "output": "spam"},
                                                                   {"input": "see you at 5", "output": "ham"}],
        "task_type": "classification", "labels": ["spam", "ham"]}


class Script:
    """Fake tools whose evaluations return scripted (dev, test) scores; they write real model folders."""

    def __init__(self, dev: list[float], test: list[float] | None = None, weak: list[str] | None = None,
                 val_score: float = 0.95) -> None:
        self.dev = list(dev)
        self.test = list(test or [round(d - 0.05, 4) for d in dev])
        self.weak = ["spam"] if weak is None else weak
        self.val_score = val_score
        self.calls: list[str] = []
        self.train_args: list[float] = []

    def tools(self) -> list[Any]:
        s = self

        @tool(response_format="content_and_artifact")
        def search_datasets() -> tuple[str, dict[str, Any]]:
            """fake"""
            s.calls.append("search_datasets")
            return "{}", {"dataset": "d", "retrieved": 20, "dev": 10}

        @tool(response_format="content_and_artifact")
        def search_models() -> tuple[str, dict[str, Any]]:
            """fake"""
            s.calls.append("search_models")
            return "{}", {"base_model": "/m", "base_model_name": "m"}

        @tool(response_format="content_and_artifact")
        def generate_examples(per_label: int = 0) -> tuple[str, dict[str, Any]]:
            """fake"""
            s.calls.append("generate_examples")
            return "{}", {"generated": 4, "per_label": {"spam": 2, "ham": 2}}

        @tool(response_format="content_and_artifact")
        def generate_targeted_examples(runtime: ToolRuntime, per_label: int = 0) -> tuple[str, dict[str, Any]]:
            """fake"""
            s.calls.append("generate_targeted_examples")
            n = runtime.state.get("generated", 0) + 3
            return "{}", {"generated": n, "per_label": {"spam": n - 2, "ham": 2}, "added": {"spam": 3},
                          "weak_labels": runtime.state.get("weak_labels")}

        @tool(response_format="content_and_artifact")
        def train_model(runtime: ToolRuntime, epochs: float = 0) -> tuple[str, dict[str, Any]]:
            """fake"""
            s.calls.append("train_model")
            s.train_args.append(epochs)
            k = runtime.state.get("iteration", 0) + 1
            model = runtime.context.run.path("iterations", str(k), "model", "weights.txt")
            model.write_text(f"model of iteration {k}")
            return "{}", {"model_dir": str(model.parent), "iteration": k, "val_score": s.val_score,
                          "epochs": epochs or 3.0}

        @tool(response_format="content_and_artifact")
        def evaluate_model(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
            """fake"""
            s.calls.append("evaluate_model")
            k = runtime.state["iteration"]
            dev, test = s.dev.pop(0), s.test.pop(0)
            folder = runtime.context.run.path("iterations", str(k), "predictions")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "test.jsonl").write_text(json.dumps({"iteration": k}) + "\n")
            metrics = {"dev": {"n": 10, "metrics": {"accuracy": dev}}, "test": {"n": 50, "metrics": {"accuracy": test}}}
            return "{}", {"score": test, "score_split": "test", "metric": "accuracy", "metrics": metrics,
                          "iteration": k, "decision_score": dev, "decision_split": "dev", "decision_n": 60,
                          "predictions_dir": str(folder), "failures_path": str(folder / "dev.jsonl"),
                          "failures": f"dev: accuracy {dev} on 10; weak labels: {', '.join(s.weak) or 'none'}",
                          "weak_labels": s.weak}

        return [search_datasets, search_models, generate_examples, generate_targeted_examples, train_model,
                evaluate_model]


def _ctx(tmp_path: Path, **kw: Any) -> Context:
    kw.setdefault("max_steps", 30)
    kw.setdefault("llm", FakeLLM(lambda m, n, i: {}))
    return Context(run=Run.create(tmp_path, "t"), hub_dirs=[tmp_path], synth=SynthConfig(per_label=2), **kw)


def _run(ctx: Context, script: Script) -> dict[str, Any]:
    graph = build_graph(script.tools(), checkpointer=InMemorySaver())
    return dict(graph.invoke({"task": TASK}, {"configurable": {"thread_id": "t"}, "recursion_limit": 200}, context=ctx))


def _rows(state: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in state["trace"] if e["kind"] == kind]


PIPELINE = ["search_datasets", "search_models", "generate_examples", "train_model", "evaluate_model"]
LOOP = ["generate_targeted_examples", "train_model", "evaluate_model"]


def test_loop_improves_and_stops_at_the_target(tmp_path: Path) -> None:
    script = Script(dev=[0.7, 0.8, 0.92])
    state = _run(_ctx(tmp_path, max_iterations=5), script)
    assert script.calls == PIPELINE + LOOP + LOOP
    assert state["finish_reason"].startswith("target met") and "dev accuracy 0.9200 >= 0.9" in state["finish_reason"]
    assert [h["decision_score"] for h in state["history"]] == [0.7, 0.8, 0.92]
    assert state["best_iteration"] == 3 and state["best_score"] == 0.92
    # Each iteration is in the trace with the split it was judged on; the finish row says why it stopped.
    iterations = _rows(state, "iteration")
    assert [(r["iteration"], r["decision_split"], r["decision_score"], r["improved"]) for r in iterations] == [
        (1, "dev", 0.7, True), (2, "dev", 0.8, True), (3, "dev", 0.92, True)]
    finish = _rows(state, "finish")[0]
    assert finish["reason"] == state["finish_reason"] and finish["best_iteration"] == 3
    assert [i["decision_score"] for i in finish["iterations"]] == [0.7, 0.8, 0.92]
    # The rules chose targeted generation because of the weak label, and said which split they read.
    targeted = [d for d in _rows(state, "decision") if d["name"] == "generate_targeted_examples"]
    assert len(targeted) == 2 and all("weak labels on dev: spam" in d["reason"] for d in targeted)
    assert all(d["decision_split"] == "dev" for d in targeted)
    assert "generate_examples" not in targeted[0]["allowed"]  # plain generation is over once the loop runs
    assert set(targeted[0]["allowed"]) == {"generate_targeted_examples", "train_model", "finish"}


def test_plateau_stops_the_loop(tmp_path: Path) -> None:
    script = Script(dev=[0.7, 0.705, 0.70, 0.9])
    state = _run(_ctx(tmp_path, max_iterations=6), script)
    assert state["finish_reason"].startswith("plateau")
    assert len(state["history"]) == 3 and script.dev == [0.9]  # the fourth evaluation never ran
    assert state["best_iteration"] == 2


def test_a_gain_above_the_margin_is_not_a_plateau(tmp_path: Path) -> None:
    script = Script(dev=[0.7, 0.69, 0.72, 0.6, 0.6])
    state = _run(_ctx(tmp_path, max_iterations=6), script)
    # 0.72 beats 0.7 by 0.02 >= 0.01, so iteration 4 runs; 4 and 5 do not beat 0.72: plateau after 5.
    assert len(state["history"]) == 5 and state["finish_reason"].startswith("plateau")


def test_iteration_budget_stops_the_loop(tmp_path: Path) -> None:
    script = Script(dev=[0.5, 0.6, 0.7, 0.8])
    state = _run(_ctx(tmp_path, max_iterations=3), script)
    assert state["finish_reason"].startswith("budget: 3 iterations")
    assert script.calls.count("evaluate_model") == 3 and script.calls[-1] == "evaluate_model"


def test_step_budget_leaves_no_room_for_another_iteration(tmp_path: Path) -> None:
    script = Script(dev=[0.5, 0.6, 0.7])
    state = _run(_ctx(tmp_path, max_steps=9), script)
    # 5 pipeline steps + 3 loop steps leave 1: too few to train and evaluate again.
    assert script.calls == PIPELINE + LOOP
    assert state["finish_reason"].startswith("budget: 9 steps")


def test_best_model_is_kept_when_the_last_iteration_got_worse(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, max_iterations=3)
    script = Script(dev=[0.8, 0.86, 0.75], test=[0.78, 0.83, 0.8])
    state = _run(ctx, script)
    assert state["finish_reason"].startswith("budget: 3 iterations")
    assert state["best_iteration"] == 2 and state["best_score"] == 0.86
    assert state["best_model_dir"] == str(ctx.run.dir / "iterations" / "2" / "model")
    # finish exported iteration 2, not the last model, and reports its test score.
    assert state["model_dir"] == str(ctx.run.dir / "model")
    assert (ctx.run.dir / "model" / "weights.txt").read_text() == "model of iteration 2"
    assert state["score"] == 0.83 and state["metrics"]["dev"]["metrics"]["accuracy"] == 0.86
    assert json.loads((ctx.run.dir / "metrics.json").read_text())["test"]["metrics"]["accuracy"] == 0.83
    assert json.loads((ctx.run.dir / "predictions" / "test.jsonl").read_text()) == {"iteration": 2}
    last = _rows(state, "iteration")[-1]
    assert last["improved"] is False and last["best_iteration"] == 2
    finish = _rows(state, "finish")[0]
    assert finish["best_iteration"] == 2 and finish["score"] == 0.83
    assert finish["exported_from"] == state["best_model_dir"]


def test_decisions_read_dev_never_test(tmp_path: Path) -> None:
    # A test score above the target does not stop the loop; a dev score above it does.
    script = Script(dev=[0.6, 0.95], test=[0.99, 0.7])
    state = _run(_ctx(tmp_path), script)
    assert len(state["history"]) == 2 and state["finish_reason"].startswith("target met (dev accuracy 0.9500")
    assert state["score"] == 0.7  # reported as measured
    for d in _rows(state, "decision"):
        assert "score" not in d["state"] and 0.99 not in d["state"].values()


def test_under_trained_student_is_retrained_with_more_epochs(tmp_path: Path) -> None:
    script = Script(dev=[0.6, 0.7, 0.95], weak=[], val_score=0.7)
    state = _run(_ctx(tmp_path), script)
    assert script.calls == PIPELINE + ["train_model", "evaluate_model"] * 2
    assert script.train_args == [0, 6.0, 12.0]  # the run's default, then twice the last training's epochs
    retrain = [d for d in _rows(state, "decision") if d["name"] == "train_model"][1]
    assert "under-trained" in retrain["reason"] and retrain["args"] == {"epochs": 6.0}


def test_nothing_to_improve_finishes_with_the_reason(tmp_path: Path) -> None:
    state = _run(_ctx(tmp_path), Script(dev=[0.6], weak=[], val_score=0.99))
    assert len(state["history"]) == 1 and state["finish_reason"].startswith("no improving action left")


def test_llm_call_budget_stops_targeted_generation(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, max_llm_calls=5)
    ctx.llm.usage.calls = 5  # type: ignore[union-attr]
    script = Script(dev=[0.6, 0.9])
    state = _run(ctx, script)
    assert "generate_examples" not in script.calls and "generate_targeted_examples" not in script.calls
    assert state["finish_reason"].startswith("budget: 5 LLM calls")


def test_llm_planner_chooses_in_the_loop_and_sees_the_failures(tmp_path: Path) -> None:
    # train_model and evaluate_model are the only valid actions in their turn: the planner is not asked then.
    llm = planner(choose("search_datasets"), choose("search_models"), choose("generate_examples"),
                  choose("generate_targeted_examples", "spam is weak"), choose("train_model", "learn the new examples"))
    script = Script(dev=[0.6, 0.95])
    state = _run(_ctx(tmp_path, planner="llm", llm=llm), script)
    assert script.calls == PIPELINE + LOOP
    assert state["finish_reason"].startswith("target met")  # a hard stop: the planner is not asked
    offers = offered(llm)
    assert len(offers) == 5
    assert offers[3] == ["generate_targeted_examples", "train_model", "finish"]
    assert offers[4] == ["train_model", "finish"]
    prompt = [r for r in llm.requests if r["name"] == "choose_action"][3]["messages"][-1]["content"]
    assert "failures: dev: accuracy 0.6 on 10; weak labels: spam" in prompt and "decision_split: dev" in prompt
    chosen = [d for d in _rows(state, "decision") if d["decided_by"] == "llm"]
    assert [d["name"] for d in chosen][-2:] == ["generate_targeted_examples", "train_model"]


def test_a_target_reached_on_held_back_training_data_is_not_claimed_as_met(tmp_path: Path) -> None:
    from agent.policy import stop_reason

    ctx = Context(run=Run.create(tmp_path, "t"), llm=None, target=0.9)
    history = [{"decision_score": 0.92, "metric": "accuracy", "decision_n": 40}]
    for split, claimed in (("dev", True), ("val", False), ("demos", False)):
        state = {"evaluated": True, "history": history, "best_score": 0.92, "decision_split": split}
        reason = stop_reason(state, ctx)
        assert reason is not None and reason.startswith("target met") == claimed, reason
        assert claimed or f"target reached on {split} accuracy 0.9200 >= 0.9, not on real held-out data" in reason
