"""Pair features for the frozen-encoder student, and the choice between it and the fine-tuned student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from p2m_engine.students import probe_student, student_choice
from p2m_engine.students.embeddings import packaged_minilm_path
from p2m_engine.students.evaluate import predict
from p2m_engine.types import Example, TrainResult

LABELS = ("no", "yes")
SENTENCES = ["the cat sat on the mat", "stocks fell sharply on monday", "the river flooded the village",
             "she won the chess tournament", "the bakery opened a new shop", "rain is expected this weekend",
             "the museum reopened after repairs", "the train was delayed by snow"]


def pair(a: str, b: str) -> str:
    return f"Sentence 1: {a}\nSentence 2: {b}"


def rows() -> list[Example]:
    # Same meaning ("yes": the sentence and a light rewording of it) against two unrelated sentences ("no").
    same = [Example(pair(s, "it is reported that " + s), "yes") for s in SENTENCES]
    other = [Example(pair(s, SENTENCES[(i + 3) % len(SENTENCES)]), "no") for i, s in enumerate(SENTENCES)]
    return same + other


def test_a_pair_task_head_reads_both_fields_and_the_folder_remembers_it(tmp_path: Path) -> None:
    data = rows()
    targets = np.eye(2)[[LABELS.index(e.output) for e in data]]
    template = student_choice.pair_input.pair_template([e.input for e in data])
    assert template is not None
    res = probe_student.train_probe_student([e.input for e in data], targets, LABELS, tmp_path / "m",
                                            packaged_minilm_path(), pair=template)
    assert res.config["pair"] is True and (tmp_path / "m" / "p2m_pair.json").is_file()
    # Cosine, |a-b| and a*b of the two fields: 2 * 384 + 1 features, not one embedding of the string.
    assert probe_student.load_head(tmp_path / "m")[0].shape == (2, 769)
    new = [pair("the dog slept by the fire", "it is reported that the dog slept by the fire"),
           pair("the dog slept by the fire", "stocks fell sharply on monday")]
    assert [label for label, _ in predict(tmp_path / "m", new)] == ["yes", "no"]


def fine_tuned(folder: Path, val_score: float) -> TrainResult:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return TrainResult(folder, 0.1, val_score, 12, 4, 3.0, 1.0, {"student": "fine-tuned", "base_model": "enc", "epochs": 3.0})


@pytest.mark.parametrize("fine_tuned_score, kept", [(0.25, "probe"), (1.0, "fine-tuned")])
def test_the_student_with_the_higher_validation_score_is_kept_in_the_iteration_folder(
        tmp_path: Path, fine_tuned_score: float, kept: str) -> None:
    data = rows()
    train, val = data[:6] + data[8:14], data[6:8] + data[14:16]
    model_dir = tmp_path / "iterations" / "1" / "model"
    choice = student_choice.keep_better(fine_tuned(model_dir, fine_tuned_score), train, val, LABELS,
                                        packaged_minilm_path())
    assert choice.student == kept and choice.result.model_dir == model_dir
    assert choice.scores["fine-tuned"] == fine_tuned_score and choice.scores["probe"] == 1.0
    assert probe_student.is_probe_student(model_dir) == (kept == "probe")
    # Whichever is kept, the record keeps the settings `p2m train` starts from.
    assert choice.result.config["base_model"] == "enc" and choice.result.config["student"] == kept
    assert [p.name for p in model_dir.parent.iterdir()] == ["model"]  # the loser's folder is gone


def test_no_rival_without_validation_rows_or_with_one_label(tmp_path: Path) -> None:
    data = rows()
    result = fine_tuned(tmp_path / "model", 0.5)
    assert student_choice.keep_better(result, data, [], LABELS, packaged_minilm_path()).student == "fine-tuned"
    only_yes = [e for e in data if e.output == "yes"]
    choice = student_choice.keep_better(result, only_yes, data[:2], LABELS, packaged_minilm_path())
    assert choice.student == "fine-tuned" and choice.scores == {"fine-tuned": 0.5}
    assert not (tmp_path / "model-probe").exists()


def test_the_model_card_says_which_student_won_and_by_how_much(tmp_path: Path) -> None:
    import json

    from p2m_engine.students.card import write_model_card
    from p2m_engine.types import TaskSpec

    data = rows()
    model_dir = tmp_path / "model"
    choice = student_choice.keep_better(fine_tuned(model_dir, 0.25), data[:6] + data[8:14], data[6:8] + data[14:16],
                                        LABELS, packaged_minilm_path())
    (model_dir / "p2m_train.json").write_text(json.dumps({"choice": choice.to_dict()}))
    spec = TaskSpec("Do these two sentences mean the same thing?", (data[0],), "classification", LABELS)
    text = write_model_card(model_dir, spec, {"base_model": "all-MiniLM-L6-v2"}).read_text()
    assert "trained on the real labelled rows" in text and "fine-tuned 0.25, probe 1.0" in text
