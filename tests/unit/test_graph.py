"""The build graph driven by a scripted planner and fake tools: routing, fallback, budgets, trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from agent.graph import build_graph
from agent.policy import allowed_actions
from p2m_engine.errors import DatasetError
from p2m_engine.runs import Run
from p2m_engine.data.synth import SynthConfig
from tests.fakes import FakeLLM, choose, offered, planner

TASK = {"instruction": "Is this SMS spam or ham?", "examples": [{"input": "win cash now", "output": "spam"},
                                                                   {"input": "see you at 5", "output": "ham"}],
        "task_type": "classification", "labels": ["spam", "ham"]}
CALLS: list[str] = []


@tool(response_format="content_and_artifact")
def search_datasets() -> tuple[str, dict[str, Any]]:
    """fake"""
    CALLS.append("search_datasets")
    return "{}", {"dataset": "d", "retrieved": 10, "candidates": [{"name": "d", "score": 0.9}]}


@tool(response_format="content_and_artifact")
def search_models() -> tuple[str, dict[str, Any]]:
    """fake"""
    CALLS.append("search_models")
    return "{}", {"base_model": "/m", "base_model_name": "m"}


ARGS: list[dict[str, Any]] = []


@tool(response_format="content_and_artifact")
def generate_examples(per_label: int = 0, guidance: str = "") -> tuple[str, dict[str, Any]]:
    """fake"""
    CALLS.append("generate_examples")
    ARGS.append({"per_label": per_label, "guidance": guidance})
    return "{}", {"generated": 4, "per_label": {"spam": 2, "ham": 2}, "llm_calls": 2, "tokens": 30}


@tool(response_format="content_and_artifact")
def train_model(epochs: float = 0) -> tuple[str, dict[str, Any]]:
    """fake"""
    CALLS.append("train_model")
    return "{}", {"model_dir": "/out/model", "val_score": 0.9}


@tool(response_format="content_and_artifact")
def evaluate_model() -> tuple[str, dict[str, Any]]:
    """fake"""
    CALLS.append("evaluate_model")
    return "{}", {"score": 0.8, "score_split": "test", "metrics": {"test": {"n": 5}}}


FAKE_TOOLS = [search_datasets, search_models, generate_examples, train_model, evaluate_model]


def _ctx(tmp_path: Path, **kw: Any) -> Context:
    kw.setdefault("llm", FakeLLM(lambda m, n, i: {}))
    return Context(run=Run.create(tmp_path, "t"), hub_dirs=[tmp_path], synth=SynthConfig(per_label=2), **kw)


def _run(ctx: Context, tools: list[Any] = FAKE_TOOLS) -> dict[str, Any]:
    CALLS.clear()
    graph = build_graph(tools, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}, "recursion_limit": 100}
    return dict(graph.invoke({"task": TASK}, config, context=ctx))


def test_rules_build_runs_the_pipeline_in_order(tmp_path: Path) -> None:
    state = _run(_ctx(tmp_path))
    assert CALLS == ["search_datasets", "search_models", "generate_examples", "train_model", "evaluate_model"]
    assert state["score"] == 0.8 and state["model_dir"] == "/out/model" and state["steps"] == 5
    decisions = [e for e in state["trace"] if e["kind"] == "decision"]
    assert all(d["decided_by"] == "rules" for d in decisions)
    assert state["trace"][-1]["kind"] == "finish"
    tools_rows = [e for e in state["trace"] if e["kind"] == "tool"]
    assert [t["name"] for t in tools_rows] == CALLS and tools_rows[2]["llm_calls"] == 2


def test_llm_planner_leads_and_is_recorded(tmp_path: Path) -> None:
    # The LLM skips generation: it trains on retrieved data first, which is allowed.
    llm = planner(choose("search_datasets"), choose("search_models"), choose("train_model", "enough real data"),
                  choose("evaluate_model"), choose("finish", "good enough"))
    state = _run(_ctx(tmp_path, planner="llm", llm=llm, max_steps=10))
    assert CALLS == ["search_datasets", "search_models", "train_model", "evaluate_model"]
    decisions = [e for e in state["trace"] if e["kind"] == "decision"]
    assert [d["decided_by"] for d in decisions] == ["llm"] * 5
    assert decisions[0]["tokens_in"] == 10 and decisions[2]["reason"] == "enough real data"  # the fake's 10 a call
    assert state["finish_reason"] == "good enough"
    # The planner was only offered allowed actions, through the build's one LLM client (its usage, its cost).
    assert offered(llm)[0] == ["search_datasets", "search_models", "generate_examples"]
    assert llm.usage.calls == 5 and [r["temperature"] for r in llm.requests] == [0.0] * 5


def test_the_planner_reads_each_tool_as_its_docstring_describes_it() -> None:
    from agent.policy import ACTIONS, ORDER
    from tools import TOOLS

    # The action list is the tools' list: a tool added to TOOLS is offered with its own first paragraph.
    assert ORDER == [t.name for t in TOOLS] + ["finish"]
    assert ACTIONS["train_model"].startswith("Fine-tune the student on the data gathered so far (after an evaluation: "
                                             "retrain,")
    assert all("\n" not in doc and "Args:" not in doc for doc in ACTIONS.values())
    from agent.planner import ask_planner

    llm = planner(choose("search_datasets"))
    assert ask_planner(llm, "Is it spam?", {}, ["search_datasets"])[0] == "search_datasets"
    system = llm.requests[0]["messages"][0]["content"]
    for t in TOOLS:
        paragraph = " ".join(t.description.split("\n\n")[0].split())
        assert f"- {t.name}: {paragraph}" in system
    assert "- finish: stop and export the best model" in system


def test_planner_calls_count_against_the_llm_budget(tmp_path: Path) -> None:
    # Three calls allowed: the planner takes them, then the rules decide without asking, and say why.
    llm = planner(*[choose(a) for a in ("search_datasets", "search_models", "generate_examples")])
    state = _run(_ctx(tmp_path, planner="llm", llm=llm, max_llm_calls=3, max_steps=10))
    decisions = [e for e in state["trace"] if e["kind"] == "decision"]
    assert [d["decided_by"] for d in decisions[:3]] == ["llm"] * 3 and llm.usage.calls == 3
    assert all(d["decided_by"] == "rules" and "budget is spent" in d["reason"]
               for d in decisions[3:] if len(d["allowed"]) > 1)


def test_unusable_llm_answer_falls_back_to_rules(tmp_path: Path) -> None:
    llm = planner(*[choose("evaluate_model", "nonsense")] * 10)  # never allowed before training
    state = _run(_ctx(tmp_path, planner="llm", llm=llm))
    fallbacks = [e for e in state["trace"] if e["kind"] == "decision" and "fallback" in e["reason"]]
    assert fallbacks and all(e["decided_by"] == "rules" for e in fallbacks)
    assert CALLS[:2] == ["search_datasets", "search_models"]


def test_step_budget_stops_the_build(tmp_path: Path) -> None:
    state = _run(_ctx(tmp_path, max_steps=2))
    assert CALLS == ["search_datasets", "search_models"]
    assert "step budget" in state["finish_reason"]
    assert state.get("model_dir") is None


def test_model_caused_tool_error_becomes_an_observation(tmp_path: Path) -> None:
    @tool("search_datasets", response_format="content_and_artifact")
    def broken_search() -> tuple[str, dict[str, Any]]:
        """fake"""
        raise DatasetError("hub folder has no datasets")

    state = _run(_ctx(tmp_path), [broken_search, *FAKE_TOOLS[1:]])
    errors = [e for e in state["trace"] if e["kind"] == "tool" and not e["ok"]]
    assert errors and "no datasets" in errors[0]["error"]
    # The build went on without the dataset and still produced a model.
    assert state["model_dir"] == "/out/model"


def test_stalled_generation_is_not_offered_again(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    base = {"task": TASK, "base_model": "/m", "generated": 1, "trace": [{"kind": "tool", "name": "search_datasets"},
                                                                       {"kind": "tool", "name": "generate_examples"}]}
    assert "generate_examples" in allowed_actions(base, ctx)
    assert "generate_examples" not in allowed_actions({**base, "generation_stalled": True}, ctx)


def test_allowed_actions_guard_rails(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    fresh = {"task": TASK}
    assert "train_model" not in allowed_actions(fresh, ctx)
    assert "evaluate_model" not in allowed_actions(fresh, ctx)
    ready = {"task": TASK, "base_model": "/m", "retrieved": 5, "generated": 4,
             "trace": [{"kind": "tool", "name": "search_datasets"}]}
    assert allowed_actions(ready, ctx) == ["train_model"]
    trained = {**ready, "model_dir": "/x", "trained_on": 9}
    assert allowed_actions(trained, ctx) == ["evaluate_model"]
    assert allowed_actions({**trained, "evaluated": True}, ctx) == ["finish"]


def test_no_data_possible_finishes_with_reason(tmp_path: Path) -> None:
    ctx = Context(run=Run.create(tmp_path, "t"), llm=None, hub_dirs=[], synth=SynthConfig(per_label=2))
    state = _run(ctx)
    assert CALLS == ["search_models"]
    assert "no training data" in state["finish_reason"]
    assert state.get("model_dir") is None


@pytest.mark.parametrize("node", ["plan", "observe", "finish"])
def test_nodes_have_docstrings(node: str) -> None:
    import agent.nodes as nodes

    assert getattr(nodes, node).__doc__


def test_the_planner_sets_arguments_that_the_policy_clips_and_the_trace_records(tmp_path: Path) -> None:
    from agent.planner import tool_arguments

    ARGS.clear()
    llm = planner(choose("search_datasets"), choose("search_models"),
                  choose("generate_examples", "acronyms are rare", {"per_label": 999, "guidance": "questions  about acronyms"}),
                  *[choose("finish", "done")] * 4)
    state = _run(_ctx(tmp_path, planner="llm", llm=llm, max_steps=10, tool_arguments=tool_arguments(FAKE_TOOLS)))
    decisions = {d["name"]: d for d in state["trace"] if d["kind"] == "decision"}
    gen = decisions["generate_examples"]
    # More examples than the budget's per-label target are clipped to it; the guidance reaches the tool.
    assert gen["decided_by"] == "llm" and gen["args_by"] == "llm"
    assert gen["args"] == {"per_label": 2, "guidance": "questions about acronyms"}
    assert gen["clipped"] == {"per_label": 999, "guidance": "questions  about acronyms"}
    assert ARGS == [{"per_label": 2, "guidance": "questions about acronyms"}]
    # Epochs are clipped to what a retraining may take; a number in range passes unchanged.
    from agent.policy import check_args

    ctx = _ctx(tmp_path / "c", tool_arguments=tool_arguments(FAKE_TOOLS))
    assert check_args("train_model", {"epochs": 4}, state, ctx) == ({"epochs": 4.0}, {})
    assert check_args("train_model", {"epochs": 1e9}, state, ctx) == ({"epochs": 2 * ctx.train.max_epochs}, {"epochs": 1e9})
    # From the second step on, the planner reads the last tool results (at most two, each cut short).
    prompts_seen = [r["messages"][-1]["content"] for r in llm.requests]
    assert "Last results:" not in prompts_seen[0] and "- search_datasets: " in prompts_seen[1]
    assert "- search_datasets: " in prompts_seen[2] and "- search_models: " in prompts_seen[2]
    from langchain_core.messages import ToolMessage

    from agent.planner import RESULT_CHARS, last_results

    shown = last_results([ToolMessage("a", name="one", tool_call_id="1"), ToolMessage("b", name="two", tool_call_id="2"),
                          ToolMessage("x" * 5000, name="three", tool_call_id="3")])
    assert [o["name"] for o in shown] == ["two", "three"] and len(shown[1]["content"]) == RESULT_CHARS + 4
    # The planner was offered the allowed tools' own arguments, described.
    offered_args = [r["schema"]["properties"].get("args", {}).get("properties", {}) for r in llm.requests]
    # (the retrieved rows already allow training: its epochs are offered too).
    assert set(offered_args[2]) == {"per_label", "guidance", "epochs"}
    assert offered_args[2]["per_label"]["type"] == "integer" and "examples per label" in offered_args[2]["per_label"]["description"]


@pytest.mark.parametrize("bad", [{"per_label": "many"}, {"temperature": 2.0}, ["per_label", 3], {"epochs": 2}])
def test_unusable_arguments_are_refused_and_the_rules_take_the_step(bad: Any, tmp_path: Path) -> None:
    from agent.planner import tool_arguments

    ARGS.clear()
    llm = planner(choose("search_datasets"), choose("search_models"), *[choose("generate_examples", "bad", bad)] * 8)
    state = _run(_ctx(tmp_path, planner="llm", llm=llm, max_steps=6, tool_arguments=tool_arguments(FAKE_TOOLS)))
    third = [d for d in state["trace"] if d["kind"] == "decision"][2]
    assert third["decided_by"] == "rules" and "arguments were refused" in third["reason"] and "args_by" not in third
    assert ARGS[0] == {"per_label": 0, "guidance": ""}  # the rules' call: the run's defaults


def test_a_data_mix_is_checked_against_the_usable_datasets_and_clipped_to_the_cap(tmp_path: Path) -> None:
    import pytest

    from agent.planner import tool_arguments
    from agent.policy import allowed_actions, check_mix
    from tools import TOOLS

    ctx = _ctx(tmp_path, tool_arguments=tool_arguments(TOOLS))
    state = {"task": {"labels": ["a", "b"]}, "dataset_candidates": ["news", "reviews"], "tried": ["search_datasets"]}
    assert check_mix({"news": 30, "reviews": 0}, state, ctx) == ({"news": 30}, {"news": 30, "reviews": 0})
    assert check_mix({"news": 10 ** 9}, state, ctx) == ({"news": ctx.max_retrieved}, {"news": 10 ** 9})
    for bad, why in (({"tweets": 5}, "did not find usable"), ({"news": 0}, "takes no rows"), ([1], "must be an object"),
                     ({"news": "all"}, "must be numbers")):
        with pytest.raises(ValueError, match=why):
            check_mix(bad, state, ctx)
    # The planner is offered the mix as an object of counts (the tool's own schema).
    assert tool_arguments(TOOLS)["search_datasets"]["mix"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    # Topics: texts, cut, without blanks or repeats, at most MAX_TOPICS; anything else is refused.
    from agent.policy import MAX_TOPIC_CHARS, MAX_TOPICS, check_topics

    assert check_topics(["parcels", "bills"]) == (["parcels", "bills"], None)
    assert check_topics([" parcels ", "", "parcels", "x" * 99]) == (["parcels", "x" * MAX_TOPIC_CHARS],
                                                                   [" parcels ", "", "parcels", "x" * 99])
    assert len(check_topics([f"t{i}" for i in range(50)])[0]) == MAX_TOPICS
    for bad in ("parcels", [1, 2], [" "]):
        with pytest.raises(ValueError, match="topics"):
            check_topics(bad)
    assert tool_arguments(TOOLS)["generate_examples"]["topics"] == {"type": "array", "items": {"type": "string"}}
    # A base model to train from: one the model search found loadable, by name.
    from agent.policy import check_args

    found = {**state, "model_candidates": {"mini": "/models/mini"}}
    assert check_args("train_model", {"base_model": "mini"}, found, ctx) == ({"base_model": "mini"}, {})
    with pytest.raises(ValueError, match="not one the model search found"):
        check_args("train_model", {"base_model": "bert-large"}, found, ctx)
    # Labels: the task's own, each once; an unknown one is refused.
    from agent.policy import check_labels

    assert check_labels(["b", "a", "b"], state) == ["b", "a"]
    for bad in (["c"], [], "a", [1]):
        with pytest.raises(ValueError, match="label"):
            check_labels(bad, state)
    # A second search is allowed only before anything was trained on the first one's choice.
    assert "search_datasets" in allowed_actions(state, ctx)
    assert "search_datasets" not in allowed_actions({**state, "model_dir": "m"}, ctx)
    assert "search_datasets" not in allowed_actions({**state, "tried": ["search_datasets"] * 2}, ctx)
