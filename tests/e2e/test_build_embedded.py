"""The real thing, on a tiny budget: `p2m build` with the embedded LLM, offline, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_HUB, ROOT

pytestmark = pytest.mark.e2e


def _p2m(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)


def test_offline_build_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "P2M_HOME": str(tmp_path / "home")}
    proc = _p2m("build", "examples/sms_spam.txt", "--hub", str(DEMO_HUB), "--out", str(tmp_path / "runs"),
                "--budget", "per_label=10,epochs=1,retrieved=12,iterations=1", "--json", env=env)
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    # Exit code 0 when the target was met, 2 when the build finished below it; a model either way.
    assert proc.returncode == (0 if summary["met_target"] else 2) and summary["model_dir"]
    run = Path(summary["run"])
    # The run folder a person can read: config, data, model, metrics, model card, trace.
    for name in ("config.json", "task.json", "metrics.json", "summary.json", "trace.jsonl", "data/generated.jsonl",
                 "data/retrieved.jsonl", "data/test.jsonl", "model/config.json", "model/README.md",
                 "predictions/test.jsonl"):
        assert (run / name).is_file(), name
    generated = [json.loads(x) for x in (run / "data/generated.jsonl").read_text().splitlines()]
    assert summary["generated"] == len(generated) > 0
    assert {r["output"] for r in generated} <= {"ham", "spam"}
    assert summary["llm_usage"]["calls"] > 0
    metrics = json.loads((run / "metrics.json").read_text())
    # The retrieved dataset's 200 held-out rows, less the two that are the prompt's demonstrations.
    assert metrics["test"]["n"] == 198 and metrics["demos_dropped"] == {"test": 2}
    assert 0.0 <= metrics["test"]["metrics"]["accuracy"] <= 1.0
    assert summary["score"] == pytest.approx(metrics["test"]["metrics"]["accuracy"], abs=1e-4)
    # The trace names every step, with a decision before each tool call.
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    tools = [e["name"] for e in events if e["kind"] == "tool"]
    assert tools[:5] == ["search_datasets", "search_models", "generate_examples", "train_model", "evaluate_model"]
    # One iteration here: the loop itself is covered by the unit tests.
    assert tools[-1] == "evaluate_model" and tools.count("train_model") == tools.count("evaluate_model") == 1
    assert all(e["ok"] for e in events if e["kind"] == "tool")
    assert events[-1]["kind"] == "finish"

    pred = _p2m("predict", str(run), "WINNER!! Claim your free prize now, text WIN to 80082", "ok see you at home",
                env=env)
    assert pred.returncode == 0, pred.stderr[-2000:]
    labels = [json.loads(line)["output"] for line in pred.stdout.splitlines()]
    assert len(labels) == 2 and set(labels) <= {"ham", "spam"}

    shown = _p2m("trace", str(run), env=env)
    assert shown.returncode == 0 and "generate_examples" in shown.stdout
