"""`p2m train RUN`: the student of a finished run trained again from its saved splits, alone or under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from p2m_engine.task import parse_task
from p2m_engine.students.train import TrainConfig
from tests.conftest import DEMO_HUB, ROOT
from tests.unit.test_textgen import tiny_causal_lm  # noqa: F401 (a fixture)


@pytest.fixture()
def run(tmp_path: Path, tiny_encoder: Path) -> Path:
    """A finished run folder as a build leaves it: task, settings, the model's training settings, the splits."""
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "model").mkdir()
    spec = parse_task((ROOT / "examples" / "sms_spam.txt").read_text())
    (run / "task.json").write_text(json.dumps(spec.to_dict()))
    (run / "config.json").write_text(json.dumps({"test": None}))
    config = TrainConfig(base_model=str(tiny_encoder), epochs=1, bf16="off", batch_size=8, min_steps=4)
    (run / "model" / "p2m_train.json").write_text(json.dumps({**asdict(config), "lora_used": False}))
    rows = [json.loads(line) for line in (DEMO_HUB / "sms_spam" / "train.jsonl").read_text().splitlines()][:60]
    for name, part in (("train", rows[:40]), ("val", rows[40:50]), ("dev", rows[50:60])):
        (run / "data" / f"{name}.jsonl").write_text(
            "".join(json.dumps({"input": r["input"], "output": r["output"]}) + "\n" for r in part))
    return run


def _steps(model_dir: Path) -> int:
    history = json.loads((model_dir / "p2m_train.json").read_text())["log_history"]
    return max(h.get("step", 0) for h in history)


def test_train_again_longer_and_score_on_dev(run: Path) -> None:
    result = CliRunner().invoke(cli, ["train", str(run), "--epochs", "2", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # CliRunner mixes stderr (progress bars) into the output: the summary is the last JSON object.
    summary = json.loads(result.output[result.output.rindex('{"model_dir"'):].splitlines()[0])
    model_dir = Path(summary["model_dir"])
    assert model_dir.parent.parent == run / "retrained" and (model_dir / "config.json").is_file()
    assert summary["n_train"] == 40 and summary["n_val"] == 10 and summary["epochs"] == 2
    assert summary["processes"] == 1 and set(summary["scores"]) == {"dev"} and 0 <= summary["scores"]["dev"] <= 1
    assert _steps(model_dir) == 2 * 5  # 40 rows, batch 8, two epochs
    # The new folder serves like a build's model: its task travels with it.
    assert json.loads((model_dir / "p2m_task.json").read_text())["task_type"] == "classification"
    record = json.loads((model_dir / "p2m_train.json").read_text())  # the build's record, written by the same function
    assert {"n_train", "n_val", "train_loss", "val_score", "base_model"} <= set(record) and record["processes"] == 1
    assert (model_dir.parent / "predictions" / "dev.jsonl").is_file()


def _torchrun(run: Path) -> dict:
    """`p2m train RUN` under `torchrun --nproc_per_node 2` (gloo on CPU): the one summary printed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "agent.cli",
                           "train", str(run), "--epochs", "1", "--json", "--out", str(run / "ddp")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only the main process reports
    summary = json.loads(lines[0])
    return summary


def test_torchrun_trains_with_two_processes_and_one_writer(run: Path) -> None:
    # DistributedDataParallel on CPU (gloo): each process sees half the rows, so an epoch is 3 steps, not 5.
    summary = _torchrun(run)
    assert summary["processes"] == 2 and _steps(run / "ddp" / "model") == 3


def test_torchrun_trains_the_generation_student_with_two_processes_and_one_writer(run: Path,
                                                                                tiny_causal_lm: Path) -> None:
    task = json.loads((run / "task.json").read_text())
    (run / "task.json").write_text(json.dumps({**task, "task_type": "generation", "labels": []}))
    config = TrainConfig(base_model=str(tiny_causal_lm), epochs=1, bf16="off", batch_size=4, min_steps=0)
    (run / "model" / "p2m_train.json").write_text(json.dumps({**asdict(config), "lora_used": False}))
    summary = _torchrun(run)
    # 40 rows at 4 a batch, half to each process: 5 steps an epoch, not 10.
    assert summary["processes"] == 2 and _steps(run / "ddp" / "model") == 5
    assert (run / "ddp" / "model" / "p2m_textgen.json").is_file() and "chrf++" in summary["metric"]


def test_train_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", str(tmp_path)])
    assert result.exit_code == 1 and "is not a finished p2m run: task.json" in result.output
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_bad_epochs_are_refused(run: Path) -> None:
    result = CliRunner().invoke(cli, ["train", str(run), "--epochs", "0"])
    assert result.exit_code == 1 and "--epochs must be positive" in result.output
