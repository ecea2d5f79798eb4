"""Real but tiny training: a 2-layer, hidden-size-8 BERT learns, is saved, reloads and is scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2m_engine.errors import TrainingError
from p2m_engine.students.evaluate import evaluate_classifier, load_classifier
from p2m_engine.eval.metrics import classification_metrics
from p2m_engine.students.train import TrainConfig, split_validation, train_classifier
from p2m_engine.types import Example

LABELS = ("neg", "pos")


def _data(n: int) -> list[Example]:
    good = ["great", "lovely", "excellent", "wonderful"]
    bad = ["awful", "terrible", "horrible", "dreadful"]
    return [Example(f"this was {good[i % 4]}", "pos") if i % 2 else Example(f"this was {bad[i % 4]}", "neg")
            for i in range(n)]


def test_tiny_model_trains_saves_and_evaluates(tiny_encoder: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    train, val = split_validation(_data(64), seed=0)
    before = AutoModelForSequenceClassification.from_pretrained(str(tiny_encoder), num_labels=2)
    w0 = before.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    cfg = TrainConfig(base_model=str(tiny_encoder), epochs=2, learning_rate=5e-3, batch_size=8, bf16="off")
    res = train_classifier(train, val, LABELS, tmp_path / "model", cfg)
    assert res.train_loss > 0 and res.n_train == len(train) and res.n_val == len(val)
    assert 0.0 <= res.val_score <= 1.0
    model, _ = load_classifier(res.model_dir)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, w0)
    assert not (tmp_path / "model-checkpoints").exists()

    test = _data(10)
    report = evaluate_classifier(res.model_dir, test, "test", tmp_path / "pred.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and report.n == 10
    # The report's figures are the metrics of the saved predictions.
    expected = classification_metrics([r["gold"] for r in rows], [r["prediction"] for r in rows])
    assert report.metrics == pytest.approx(expected)
    assert set(report.per_label_recall) == {"neg", "pos"}


def test_loss_falls_with_training(tiny_encoder: Path, tmp_path: Path) -> None:
    data = _data(48)
    short = train_classifier(data, [], LABELS, tmp_path / "a", TrainConfig(base_model=str(tiny_encoder), max_steps=1,
                                                                    learning_rate=5e-3, batch_size=8, bf16="off"))
    longer = train_classifier(data, [], LABELS, tmp_path / "b", TrainConfig(base_model=str(tiny_encoder), epochs=8,
                                                                     learning_rate=5e-3, batch_size=8, bf16="off"))
    assert longer.train_loss < short.train_loss


def test_one_label_is_refused(tiny_encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="at least two labels"):
        train_classifier([Example("a", "pos")] * 4, [], LABELS, tmp_path / "m", TrainConfig(base_model=str(tiny_encoder)))


def test_unknown_label_is_refused(tiny_encoder: Path, tmp_path: Path) -> None:
    rows = [Example("a", "pos"), Example("b", "maybe")]
    with pytest.raises(TrainingError, match="outside"):
        train_classifier(rows, [], LABELS, tmp_path / "m", TrainConfig(base_model=str(tiny_encoder)))


def test_split_validation_is_stratified_and_keeps_train_labels() -> None:
    rows = [Example(f"p{i}", "pos") for i in range(20)] + [Example(f"n{i}", "neg") for i in range(2)]
    train, val = split_validation(rows, fraction=0.2)
    assert {e.output for e in train} == {"pos", "neg"}
    assert sum(e.output == "pos" for e in val) == 4 and sum(e.output == "neg" for e in val) == 1
    assert not {e.input for e in train} & {e.input for e in val}


def test_small_datasets_get_enough_optimizer_steps() -> None:
    from p2m_engine.students.train import effective_epochs

    cfg = TrainConfig(epochs=3, batch_size=16, min_steps=150, max_epochs=40)
    assert effective_epochs(60, cfg) == 150 / 4  # 4 steps an epoch
    assert effective_epochs(10_000, cfg) == 3  # large data: the configured epochs
    assert effective_epochs(5, cfg) == 40  # capped
    assert effective_epochs(60, TrainConfig(epochs=50, min_steps=150, max_epochs=40)) == 50  # never fewer than asked


def test_held_out_drops_the_demonstrations_however_they_are_cased() -> None:
    from p2m_engine.eval.iteration import held_out

    demos = (Example("Great film!", "positive"), Example("dull plot", "negative"))
    rows = [Example("great FILM", "positive"), Example("a new review", "negative"), Example("Dull plot.", "negative"),
            Example("great film, again", "positive")]
    assert held_out(rows, demos) == [rows[1], rows[3]]
    assert held_out(rows, ()) == rows
