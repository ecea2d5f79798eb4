"""A whole build led by a scripted planner LLM through the loopback OpenAI stand-in: the real tools, the
planner's arguments reaching the engine, and garbage answers handed to the rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.openai_stub import SmsTeacher, build_through_stub

KEY = "sk-sentinel-planner-31c0"
GUIDANCE = "messages about a parcel that could not be delivered"
TOPICS = ["parcel delivery", "train tickets"]


class Planner(SmsTeacher):
    """The planner's answers in order (garbage first), then the arguments under test."""

    def __init__(self) -> None:
        super().__init__()
        self.planned = 0
        self.trained = False
        self.base_model = ""  # the name the model search gives the test's base model

    def choose(self, allowed: list[str]) -> tuple[str, Any]:
        self.planned += 1
        if self.planned == 1:
            return "raw_args", '{"action": "search_datasets", "reason": '  # malformed JSON
        if self.planned == 2:
            return "tool", {"action": "delete_the_run", "reason": "not a tool"}
        if "generate_examples" in allowed and not self.n:
            return "tool", {"action": "generate_examples", "reason": "few real rows",
                            "args": {"per_label": 4, "guidance": GUIDANCE, "topics": TOPICS}}
        if "train_model" in allowed and not self.trained:
            self.trained = True
            return "tool", {"action": "train_model", "reason": "data ready",
                            "args": {"epochs": 1e9, "base_model": self.base_model}}
        later = [a for a in ("evaluate_model", "finish") if a in allowed]
        return "tool", {"action": (later or allowed)[0], "reason": "next"}


def led_build(planner: SmsTeacher, out: Path, student: Path, retrieved: int,
              per_label: int) -> tuple[dict[str, Any], Path, list[dict[str, Any]], list[Any]]:
    """A build led by `planner` through the stand-in: its summary, run folder, trace events and the requests."""
    result, requests = build_through_stub(planner, KEY, out, student, retrieved=retrieved, per_label=per_label)
    assert result.exit_code in (0, 2), result.output
    summary = json.loads(result.stdout)
    run = Path(summary["run"])
    return summary, run, [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()], requests


def test_a_scripted_planner_leads_a_build_and_its_arguments_reach_the_engine(tmp_path: Path, tiny_encoder: Path) -> None:
    from p2m_engine.students.models import search_models

    planner = Planner()
    planner.base_model = search_models("classification", base_model=str(tiny_encoder))[0].name
    summary, run, events, requests = led_build(planner, tmp_path, tiny_encoder, retrieved=0, per_label=6)
    decisions = [e for e in events if e["kind"] == "decision"]
    # Malformed JSON and a tool that does not exist: the rules took those two steps, and the trace says why.
    assert [d["decided_by"] for d in decisions[:2]] == ["rules", "rules"]
    assert "failed" in decisions[0]["reason"] and "'delete_the_run'" in decisions[1]["reason"]
    by_name = {d["name"]: d for d in reversed(decisions)}  # the first decision of each name
    # The planner's generation arguments reached the engine: 4 examples per label in all (under the budget's 6;
    # the real rows count), and the guidance text in every prompt the teacher was asked to write from.
    gen = by_name["generate_examples"]
    assert gen["decided_by"] == "llm" and gen["args_by"] == "llm"
    assert gen["args"] == {"per_label": 4, "guidance": GUIDANCE, "topics": TOPICS} and not gen.get("clipped")
    # Each batch was written about one of the planner's topics.
    written = [json.loads(x) for x in (run / "data" / "generated.jsonl").read_text().splitlines()]
    assert written and {r["topic"] for r in written} <= set(TOPICS)
    assert summary["generated"] + summary["retrieved"] == 2 * 4 and summary["generated"] >= 6
    assert f"- **Generated**: {summary['generated']} rows by `{summary['teacher']}`" in (run / "data" / "README.md").read_text()
    writing = [r["body"] for r in requests if r["method"] == "POST" and isinstance(r["body"], dict)
               and r["body"].get("tool_choice", {}).get("function", {}).get("name") not in (None, "choose_action")]
    assert writing and all(f"Guidance: {GUIDANCE}" in b["messages"][-1]["content"] for b in writing)
    # Epochs out of range were clipped to what a retraining may take (twice the configured cap), and training
    # ran with them.
    train = by_name["train_model"]
    config = json.loads((run / "config.json").read_text())["train"]
    cap = 2 * max(config["epochs"], config["max_epochs"])
    assert train["args_by"] == "llm" and train["clipped"] == {"epochs": 1e9}
    assert train["args"] == {"epochs": cap, "base_model": planner.base_model}
    record = json.loads((run / "model" / "p2m_train.json").read_text())
    assert record["epochs"] == cap and Path(record["base_model"]) == tiny_encoder.resolve()
    # The HTML report shows each decision's arguments.
    from agent.report import render_report

    html = render_report(run)
    assert GUIDANCE in html and "clipped" in html


class Mixer(SmsTeacher):
    """Searches, then asks for a mix naming a dataset the search did not find usable (refused), then a mix of
    12 rows of the demo hub's sms_spam, then lets the rules' order run."""

    def __init__(self) -> None:
        super().__init__()
        self.mixes = [{"sms_spam": 12, "no_such_dataset": 5}, {"sms_spam": 12.0}]
        self.prompts: list[str] = []

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        if body.get("tool_choice", {}).get("function", {}).get("name") == "choose_action":
            self.prompts.append(body["messages"][-1]["content"])
        return super().__call__(body)

    def choose(self, allowed: list[str]) -> tuple[str, Any]:
        searched = any("usable_datasets: sms_spam" in p for p in self.prompts[-1:])
        if searched and self.mixes and "search_datasets" in allowed:
            return "tool", {"action": "search_datasets", "reason": "fewer rows", "args": {"mix": self.mixes.pop(0)}}
        order = ["search_datasets", "search_models", "generate_examples", "train_model", "evaluate_model", "finish"]
        return "tool", {"action": min(allowed, key=order.index), "reason": "next"}


def test_the_planners_data_mix_takes_those_rows_and_a_dataset_it_did_not_find_is_refused(tmp_path: Path,
                                                                                        tiny_encoder: Path) -> None:
    summary, run, events, _ = led_build(Mixer(), tmp_path, tiny_encoder, retrieved=40, per_label=8)
    searches = [e for e in events if e["kind"] == "decision" and e["name"] == "search_datasets"]
    refused = [e for e in events if e["kind"] == "decision" and "no_such_dataset" in e["reason"]]
    # The mix naming an unknown dataset was refused (the rules took that step, not a second search); the next one
    # was taken, and its arguments are in the trace.
    assert len(refused) == 1 and refused[0]["decided_by"] == "rules" and refused[0]["name"] != "search_datasets"
    assert [s["decided_by"] for s in searches] == ["llm", "llm"] and searches[1]["args"] == {"mix": {"sms_spam": 12}}
    # The mix replaced the first search's rows: 12 rows of sms_spam, label-balanced, and generation filled only
    # what they left short of 8 per label.
    retrieved = [json.loads(x) for x in (run / "data" / "retrieved.jsonl").read_text().splitlines()]
    assert len(retrieved) == summary["retrieved"] == 12 and {r["source"] for r in retrieved} == {"sms_spam"}
    assert sorted(r["output"] for r in retrieved) == ["ham"] * 6 + ["spam"] * 6
    assert summary["generated"] == 2 * (8 - 6)
    assert "sms_spam" in (run / "data" / "README.md").read_text()
    tools = [e for e in events if e["kind"] == "tool" and e["name"] == "search_datasets"]
    assert len(tools) == 2 and json.loads(tools[0]["output_summary"])["retrieved"] == 40  # the search's own take
    assert tools[1].get("mix") == {"sms_spam": 12} and "taken by the planner's mix" in tools[1]["output_summary"]
