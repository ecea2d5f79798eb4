"""A whole `p2m build` through the OpenAI-compatible path, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from tests.openai_stub import SmsTeacher, build_through_stub

KEY = "sk-sentinel-4f1c9e2b7a"


def test_build_through_openai_api_path(tmp_path: Path, tiny_encoder: Path) -> None:
    # 20 real rows per label: the teacher is asked only for the 3 per label they leave short of 23.
    result, requests = build_through_stub(SmsTeacher(), KEY, tmp_path, tiny_encoder, retrieved=40, per_label=23)
    summary = json.loads(result.stdout)
    # A model was built; a tiny untrained-looking student stays under the default 0.9 target: exit code 2.
    assert result.exit_code == (0 if summary["met_target"] else 2), result.output
    assert summary["model_dir"] and summary["target"] == 0.9
    run = Path(summary["run"])
    assert summary["generated"] == 6 and summary["retrieved"] == 40
    assert summary["llm_usage"]["calls"] >= 2
    # The planner LLM led every step where it had a choice, through the same endpoint.
    decisions = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    decisions = [d for d in decisions if d["kind"] == "decision"]
    assert [d["name"] for d in decisions] == ["search_datasets", "search_models", "generate_examples", "train_model",
                                              "evaluate_model", "finish"]
    assert {d["decided_by"] for d in decisions if len(d["allowed"]) > 1} == {"llm"}
    # Its calls are the build's calls: in the summary's usage beside the teacher's.
    asked = [r for r in requests if r["method"] == "POST" and isinstance(r["body"], dict)
             and (r["body"].get("tool_choice") or {}).get("function", {}).get("name") == "choose_action"]
    planned = sum(1 for d in decisions if d["decided_by"] == "llm")
    tools_calls = sum(e.get("llm_calls", 0) for e in map(json.loads, (run / "trace.jsonl").read_text().splitlines())
                      if e["kind"] == "tool")
    assert asked and summary["llm_usage"]["calls"] == planned + tools_calls
    # The key went to the server and nowhere else.
    assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in requests if r["method"] == "POST")
    for f in run.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    card = (run / "model" / "README.md").read_text()
    assert f"**Base model**: {tiny_encoder.name}" in card and f'base_model: "{tiny_encoder.name}"' in card
    # The retrieved dataset's 200 held-out rows hold two of the prompt's demonstrations: scored without them.
    assert "| test | 198 |" in card and json.loads((run / "metrics.json").read_text())["demos_dropped"] == {"test": 2}
    # The data card counts what the build generated, label by label, and what the filters dropped.
    data_card = (run / "data" / "README.md").read_text()
    generated = [json.loads(x) for x in (run / "data" / "generated.jsonl").read_text().splitlines()]
    assert f"- **Generated**: {len(generated)} rows by `{summary['teacher']}`" in data_card
    assert "## Filters" in data_card and "| spam |" in data_card and "| ham |" in data_card
