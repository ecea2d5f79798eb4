"""Label prior correction: the estimate, the logit shift, the shifted head, and the train tool's dev check."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from p2m_engine.students import prior
from p2m_engine.students.evaluate import predict
from p2m_engine.runs import write_jsonl
from p2m_engine.students.train import TrainConfig
from tools.train import correct_prior

LABELS = ("a", "b")
TEXTS = ["one text", "another text here", "a third one", "the last text of all"]


def test_distribution_is_smoothed_and_ignores_other_outputs() -> None:
    d = prior.distribution(["a", "a", "a", "zzz"], LABELS)
    assert d == pytest.approx({"a": 4 / 5, "b": 1 / 5})
    assert prior.distribution([], LABELS) == pytest.approx({"a": 0.5, "b": 0.5})


def test_logit_shift_is_the_centred_log_ratio() -> None:
    shift = prior.logit_shift({"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5})
    assert shift["a"] - shift["b"] == pytest.approx(math.log(9), abs=1e-3)
    assert shift["a"] + shift["b"] == pytest.approx(0, abs=1e-3)
    assert not prior.worth_shifting(prior.logit_shift({"a": 0.5, "b": 0.5}, {"a": 0.51, "b": 0.49}))
    assert prior.worth_shifting(shift)


def _bias_only_model(tiny_encoder: Path, folder: Path, bias: dict[str, float]) -> Path:
    """A classifier whose logits are its output bias alone (zero weights): its prediction is known."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_encoder), num_labels=2, id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)})
    layer = prior.output_layer(model, 2)
    with torch.no_grad():
        layer.weight.zero_()  # type: ignore[attr-defined]
        layer.bias.copy_(torch.tensor([bias[k] for k in LABELS]))  # type: ignore[attr-defined]
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_encoder)).save_pretrained(str(folder))
    return folder


def test_shift_model_moves_the_predictions_and_the_inverse_shift_restores_them(tiny_encoder: Path, tmp_path: Path) -> None:
    model_dir = _bias_only_model(tiny_encoder, tmp_path / "m", {"a": 1.0, "b": 0.0})
    assert {label for label, _ in predict(model_dir, TEXTS)} == {"a"}
    prior.shift_model(model_dir, {"a": -1.0, "b": 1.0})
    shifted = predict(model_dir, TEXTS)
    assert {label for label, _ in shifted} == {"b"}
    assert shifted[0][1] == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-4)  # bias now a=0, b=1
    prior.shift_model(model_dir, {"a": 1.0, "b": -1.0})
    assert {label for label, _ in predict(model_dir, TEXTS)} == {"a"}


def _ctx(run_dir: Path, on: bool = True) -> SimpleNamespace:
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    from p2m_engine.runs import Run

    return SimpleNamespace(run=Run(run_dir), train=TrainConfig(prior=on))


BALANCED = {"a": 0.5, "b": 0.5}


def test_without_dev_the_shift_follows_the_labelled_rows(tiny_encoder: Path, tmp_path: Path) -> None:
    model_dir = _bias_only_model(tiny_encoder, tmp_path / "m", {"a": 0.5, "b": 0.0})
    ctx = _ctx(tmp_path / "run")
    write_jsonl(tmp_path / "run" / "data" / "labelled.jsonl", ({"input": f"x{i}", "output": "b"} for i in range(60)))
    info = correct_prior(ctx, LABELS, BALANCED, model_dir)  # type: ignore[arg-type]
    assert info["applied"] and info["prior"]["b"] > 0.9 and info["shift"]["b"] > 0
    assert {label for label, _ in predict(model_dir, TEXTS)} == {"b"}


def test_a_shift_that_lowers_dev_accuracy_is_undone(tiny_encoder: Path, tmp_path: Path) -> None:
    model_dir = _bias_only_model(tiny_encoder, tmp_path / "m", {"a": 0.5, "b": 0.0})
    ctx = _ctx(tmp_path / "run")
    # The judges' labels say "b" is common, but the real dev rows are all "a": dev decides.
    write_jsonl(tmp_path / "run" / "data" / "labelled.jsonl", ({"input": f"x{i}", "output": "b"} for i in range(400)))
    write_jsonl(tmp_path / "run" / "data" / "dev.jsonl", ({"input": t, "output": "a"} for t in TEXTS * 10))
    info = correct_prior(ctx, LABELS, BALANCED, model_dir)  # type: ignore[arg-type]
    assert not info["applied"] and info["dev_before"] == 1.0 and info["dev_after"] == 0.0
    assert {label for label, _ in predict(model_dir, TEXTS)} == {"a"}


def test_no_shift_without_enough_real_rows_or_when_turned_off(tiny_encoder: Path, tmp_path: Path) -> None:
    model_dir = _bias_only_model(tiny_encoder, tmp_path / "m", {"a": 0.5, "b": 0.0})
    write_jsonl(tmp_path / "run" / "data" / "labelled.jsonl", ({"input": f"x{i}", "output": "b"} for i in range(5)))
    assert not correct_prior(_ctx(tmp_path / "run"), LABELS, BALANCED, model_dir)["applied"]  # type: ignore[arg-type]
    write_jsonl(tmp_path / "run" / "data" / "labelled.jsonl", ({"input": f"x{i}", "output": "b"} for i in range(60)))
    off = correct_prior(_ctx(tmp_path / "run", on=False), LABELS, BALANCED, model_dir)  # type: ignore[arg-type]
    assert off == {"applied": False, "why": "turned off"}
    assert {label for label, _ in predict(model_dir, TEXTS)} == {"a"}


def test_an_estimate_given_by_the_caller_replaces_the_files(tiny_encoder: Path, tmp_path: Path) -> None:
    import numpy as np

    model_dir = _bias_only_model(tiny_encoder, tmp_path / "m", {"a": 0.5, "b": 0.0})
    ctx = _ctx(tmp_path / "run")
    # The labelled file says "b" is common, but the probe student's soft labels (a larger sample) say balanced.
    write_jsonl(tmp_path / "run" / "data" / "labelled.jsonl", ({"input": f"x{i}", "output": "b"} for i in range(60)))
    soft = np.array([[0.5, 0.5]] * 100)
    estimate = (prior.soft_distribution(soft, LABELS), len(soft))
    assert estimate[0] == pytest.approx({"a": 0.5, "b": 0.5})
    info = correct_prior(ctx, LABELS, BALANCED, model_dir, estimate)  # type: ignore[arg-type]
    assert not info["applied"] and info["real_rows"] == 100
    assert {label for label, _ in predict(model_dir, TEXTS)} == {"a"}
