"""`p2m train RUN`: train the student of a finished run again from its saved splits, on this machine's devices.

This is how a build outgrows one machine: build on a laptop, then retrain the same data on a GPU box, longer or
from another base model. Launched by `torchrun --nproc_per_node N` or `accelerate launch`, every student
(classification and extractive QA on transformers' Trainer, generation on TRL's SFTTrainer) trains with
DistributedDataParallel across the N processes with no change; only the main process writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from p2m_engine.data.datasets import load_examples
from p2m_engine.errors import P2MError
from p2m_engine.runs import data_file
from p2m_engine.students import TRAIN_FILE
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import MAIN_METRIC, TaskSpec


def world() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun/accelerate (0, 1 when launched alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise P2MError(f"{path.parent} is not a finished p2m run: {path.name} ({what}) is missing.")
    return json.loads(path.read_text(encoding="utf-8"))


def train_config(run: Path, epochs: float | None, base_model: str | None) -> TrainConfig:
    """The training settings of the run's exported model, with the user's changes."""
    exported = run / "model" / TRAIN_FILE
    if not exported.is_file() and (run / "config.json").is_file():
        # The exported model is gone (deleted, damaged): train again with the settings the build started from.
        saved = _read_json(run / "config.json", "the build's settings").get("train") or {}
    else:
        saved = _read_json(exported, "the exported model's training settings")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    changes: dict[str, Any] = {}
    if epochs is not None:
        if not epochs > 0:
            raise P2MError(f"--epochs must be positive, got {epochs}.")
        changes |= {"epochs": epochs, "max_epochs": max(epochs, config.max_epochs), "min_steps": 0}
    if base_model:
        changes["base_model"] = base_model
    return dataclasses.replace(config, **changes)


def retrain(run: Path, *, epochs: float | None = None, base_model: str | None = None,
            out: Path | None = None) -> dict[str, Any]:
    """Train the student of `run` again on its `data/train.jsonl` (best checkpoint on `data/val.jsonl`), then score
    it on the run's real splits (dev, test) when they exist.

    Returns:
        The new model folder, the training figures and the scores (on the main process; the others get {}).

    Raises:
        P2MError: `run` is not a finished run.
    """
    from p2m_engine import students

    spec = TaskSpec.from_dict(_read_json(run / "task.json", "the task"))
    rank, size = world()
    config = train_config(run, epochs, base_model)
    train = load_examples(data_file(run, "train"))
    val_path = data_file(run, "val")
    val = load_examples(val_path) if val_path.is_file() and val_path.stat().st_size else []
    out = out or run / "retrained" / time.strftime("%Y%m%d-%H%M%S")
    model_dir = out / "model"
    result = students.train_student(spec, train, val, model_dir, config)
    if rank != 0:
        return {}
    students.write_model_record(model_dir, spec, result, processes=size)
    metric = MAIN_METRIC[spec.task_type]
    scores: dict[str, float] = {}
    config_test = _read_json(run / "config.json", "the build settings").get("test")
    for split in ("dev", "test"):
        path = data_file(run, split)
        if split == "test" and config_test:
            path = Path(config_test)  # the user's --test file
        if path.is_file() and path.stat().st_size:
            report = students.evaluate_student(spec.task_type, model_dir, load_examples(path), split,
                                               out / "predictions" / f"{split}.jsonl")
            scores[split] = round(report.metrics[metric], 4)
    summary = {"model_dir": str(model_dir), "metric": metric, "scores": scores, "processes": size,
               "n_train": result.n_train, "n_val": result.n_val, "train_loss": round(result.train_loss, 4),
               "epochs": result.epochs, "seconds": round(result.seconds, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
