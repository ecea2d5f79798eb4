"""The frozen-encoder student: a linear head on the packaged MiniLM, trained on soft labels, used by predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from p2m_engine.students import prior, probe_student
from p2m_engine.students.embeddings import packaged_minilm_path
from p2m_engine.errors import ModelError
from p2m_engine.students.evaluate import evaluate_classifier, load_classifier, predict
from p2m_engine.types import Example
from tools.train import probe_rows

SPORT = ["the striker scored twice and the team won the cup final", "a late goal sealed the league title",
         "the tennis champion won the match in straight sets", "the sprinter broke the world record in the final"]
WEATHER = ["heavy rain and strong winds are expected tomorrow", "temperatures will drop below freezing overnight",
           "snow is forecast for the mountains this weekend", "thunderstorms will bring hail to the north on friday"]
LABELS = ("sport", "weather")


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Soft targets, as the judges give them: confident but not one-hot.
    targets = np.array([[0.8, 0.2]] * len(SPORT) + [[0.25, 0.75]] * len(WEATHER))
    res = probe_student.train_probe_student(SPORT + WEATHER, targets, LABELS, tmp_path_factory.mktemp("s") / "m",
                                            packaged_minilm_path(), val=[("the goalkeeper saved a penalty", "sport")])
    assert res.val_score == 1.0 and res.n_train == 8 and res.config["student"] == "probe"
    return res.model_dir


def test_the_head_learns_the_task_and_predict_and_evaluate_use_it(student: Path) -> None:
    assert probe_student.is_probe_student(student) and (student / "modules.json").is_file()
    new = ["fans cheered as the home side won the derby", "a warm front brings humid air and showers"]
    assert [label for label, _ in predict(student, new)] == ["sport", "weather"]
    model, tok = load_classifier(student)
    assert tok is None and isinstance(model, probe_student.ProbeClassifier)
    assert [label for label, _ in predict(student, new, loaded=(model, tok))] == ["sport", "weather"]
    report = evaluate_classifier(student, [Example(new[0], "sport"), Example(new[1], "weather")], "test")
    assert report.metrics["accuracy"] == 1.0


def test_soft_targets_keep_the_probabilities_soft(student: Path) -> None:
    probs = probe_student.ProbeClassifier(student).probabilities(SPORT[:1])[0]
    assert 0.55 < probs[0] < 0.97  # trained towards 0.8, not towards 1.0


def test_the_prior_shift_moves_the_head_bias(student: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(student, tmp_path / "copy"))
    before = probe_student.load_head(copy)[1]
    prior.shift_model(copy, {"sport": -20.0, "weather": 20.0})
    after = probe_student.load_head(copy)[1]
    assert np.allclose(after - before, [-20.0, 20.0])
    assert {label for label, _ in predict(copy, SPORT)} == {"weather"}


def test_onnx_export_refuses_a_probe_student_with_a_clear_message(student: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from p2m_engine.students.export import export_onnx

    with pytest.raises(ModelError, match="frozen-encoder student"):
        export_onnx(student, tmp_path / "onnx")


def test_probe_rows_take_every_soft_text_and_the_generated_rows_as_one_hot() -> None:
    soft = [("a", np.array([0.6, 0.2])), ("b", np.array([0.1, 0.9]))]
    texts, targets = probe_rows(soft, [Example("c", "weather"), Example("A!", "sport")], LABELS)
    assert texts == ["a", "b", "c"]  # "A!" is the soft text "a" (normalised): not twice
    assert np.allclose(targets, [[0.75, 0.25], [0.1, 0.9], [0.0, 1.0]])


def test_the_model_card_says_which_student_and_how_to_load_it(student: Path) -> None:
    from p2m_engine.students.card import write_model_card
    from p2m_engine.types import TaskSpec

    spec = TaskSpec("Is this sentence about sport or the weather?", (Example(SPORT[0], "sport"),), "classification", LABELS)
    text = write_model_card(student, spec, {"base_model": "all-MiniLM-L6-v2"}).read_text()
    assert "frozen, with a linear head" in text and "predict_probe" in text and "pipeline(" not in text
    assert "library_name: \"sentence-transformers\"" in text
