"""A whole build led by a scripted planner LLM through the loopback OpenAI stand-in: the real tools, the
planner's arguments reaching the engine, and garbage answers handed to the rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.openai_stub import SmsTeacher, build_through_stub

KEY = "sk-sentinel-planner-31c0"
GUIDANCE = "messages about a parcel that could not be delivered"


class Planner(SmsTeacher):
    """The planner's answers in order (garbage first), then the arguments under test."""

    def __init__(self) -> None:
        super().__init__()
        self.planned = 0
        self.trained = False

    def choose(self, allowed: list[str]) -> tuple[str, Any]:
        self.planned += 1
        if self.planned == 1:
            return "raw_args", '{"action": "search_datasets", "reason": '  # malformed JSON
        if self.planned == 2:
            return "tool", {"action": "delete_the_run", "reason": "not a tool"}
        if "generate_examples" in allowed and not self.n:
            return "tool", {"action": "generate_examples", "reason": "few real rows",
                            "args": {"per_label": 4, "guidance": GUIDANCE}}
        if "train_model" in allowed and not self.trained:
            self.trained = True
            return "tool", {"action": "train_model", "reason": "data ready", "args": {"epochs": 1e9}}
        later = [a for a in ("evaluate_model", "finish") if a in allowed]
        return "tool", {"action": (later or allowed)[0], "reason": "next"}


def test_a_scripted_planner_leads_a_build_and_its_arguments_reach_the_engine(tmp_path: Path, tiny_encoder: Path) -> None:
    planner = Planner()
    result, requests = build_through_stub(planner, KEY, tmp_path, tiny_encoder, retrieved=0, per_label=6)
    summary = json.loads(result.stdout)
    assert result.exit_code in (0, 2), result.output
    run = Path(summary["run"])
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    decisions = [e for e in events if e["kind"] == "decision"]
    # Malformed JSON and a tool that does not exist: the rules took those two steps, and the trace says why.
    assert [d["decided_by"] for d in decisions[:2]] == ["rules", "rules"]
    assert "failed" in decisions[0]["reason"] and "'delete_the_run'" in decisions[1]["reason"]
    by_name = {d["name"]: d for d in reversed(decisions)}  # the first decision of each name
    # The planner's generation arguments reached the engine: 4 examples per label in all (under the budget's 6;
    # the real rows count), and the guidance text in every prompt the teacher was asked to write from.
    gen = by_name["generate_examples"]
    assert gen["decided_by"] == "llm" and gen["args_by"] == "llm"
    assert gen["args"] == {"per_label": 4, "guidance": GUIDANCE} and not gen.get("clipped")
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
    assert train["args_by"] == "llm" and train["clipped"] == {"epochs": 1e9} and train["args"] == {"epochs": cap}
    assert json.loads((run / "model" / "p2m_train.json").read_text())["epochs"] == cap
    # The HTML report shows each decision's arguments.
    from agent.report import render_report

    html = render_report(run)
    assert GUIDANCE in html and "clipped" in html
