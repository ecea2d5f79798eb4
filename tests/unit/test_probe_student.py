"""The frozen-encoder student: a linear head on the packaged MiniLM, trained on soft labels, used by predict."""

from __future__ import annotations

import dataclasses
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


def _clusters(n: int, flipped: int) -> tuple[np.ndarray, np.ndarray]:
    """Two well separated clusters of features, n rows each, one-hot targets; the first `flipped` rows of the first
    cluster carry the other label (a judge's errors)."""
    rng = np.random.default_rng(0)
    # Two features only: a linear head cannot single out a few rows inside a cluster, so it must contradict them.
    x = np.concatenate([rng.normal(0, 0.3, (n, 2)) + 2.0, rng.normal(0, 0.3, (n, 2)) - 2.0]).astype(np.float32)
    y = np.array([0] * n + [1] * n)
    y[:flipped] = 1
    return x, np.eye(2)[y]


def test_the_consistency_check_drops_the_rows_whose_label_the_other_folds_contradict() -> None:
    x, targets = _clusters(30, flipped=4)
    keep = probe_student.consistent(x, targets, probe_student.ProbeConfig(folds=5))
    assert keep is not None
    assert not keep[:4].any() and keep[4:].all()  # exactly the four wrong labels go
    # Off, or too few rows for five folds of two labels: no verdict, nothing dropped.
    assert probe_student.consistent(x, targets, probe_student.ProbeConfig(folds=0)) is None
    assert probe_student.consistent(x[:40], targets[:40], probe_student.ProbeConfig(folds=5)) is None


def test_the_consistency_check_never_removes_a_label() -> None:
    x, targets = _clusters(40, flipped=0)
    three = np.concatenate([targets, np.zeros((80, 1))], axis=1)
    three[:3] = [0.0, 0.0, 1.0]  # a third label on three rows of the first cluster: the other folds never give it
    keep = probe_student.consistent(x, three, probe_student.ProbeConfig(folds=5))
    assert keep is not None and keep[:3].all()


def test_the_student_trains_on_the_consistent_rows_and_records_what_it_dropped(tmp_path: Path) -> None:
    texts = SPORT + WEATHER
    flipped = ["the goalkeeper saved a penalty in the cup final", "the cyclist won the mountain stage"]
    rows = texts * 6 + flipped
    targets = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    targets = np.concatenate([targets] * 6 + [np.array([[0.0, 1.0]] * 2)])  # two sport texts judged weather
    res = probe_student.train_probe_student(rows, targets, LABELS, tmp_path / "m", packaged_minilm_path(),
                                            probe_student.ProbeConfig(folds=5))
    record = res.config["consistency"]
    assert record["rows"] == 50 and record["dropped"] == 2 and res.n_train == 48
    assert record["distribution"]["sport"] == pytest.approx(0.5)  # the kept rows are no longer tilted towards weather
    assert record["prior"] == record["distribution"]  # every row real: the prior estimate is the kept rows' too
    assert [label for label, _ in predict(res.model_dir, flipped)] == ["sport", "sport"]
    from p2m_engine.students import write_model_record
    from p2m_engine.students.card import write_model_card
    from p2m_engine.types import TaskSpec

    spec = TaskSpec("Is this sentence about sport or the weather?", (Example(SPORT[0], "sport"),), "classification", LABELS)
    write_model_record(res.model_dir, spec, res)
    card = write_model_card(res.model_dir, spec, {"base_model": "all-MiniLM-L6-v2"}).read_text()
    assert "2 of the 50 judged rows were dropped first" in card and "consistency check, 5-fold" in card
    assert "soft labels of real hub text" in card and "unlabelled file" not in card
    write_model_record(res.model_dir, spec, res, unlabelled=30)  # 30 of the texts from the user's --unlabelled file
    card = write_model_card(res.model_dir, spec, {"base_model": "all-MiniLM-L6-v2"}).read_text()
    assert "soft labels of real text (30 of the texts from the user's own unlabelled file, any others from the hub)" in card
    # The last two rows generated, not real: the prior estimate comes from the kept real rows only.
    some = probe_student.train_probe_student(rows, targets, LABELS, tmp_path / "some", packaged_minilm_path(),
                                             probe_student.ProbeConfig(folds=5), real=40)
    assert some.config["consistency"]["prior"]["sport"] == pytest.approx((20 + 1) / (40 + 2))
    off = probe_student.train_probe_student(rows, targets, LABELS, tmp_path / "off", packaged_minilm_path())
    assert "consistency" not in off.config and off.n_train == 50


def test_nearness_weights_keep_the_near_texts_whole_and_decay_the_far_ones() -> None:
    near = np.array([0.40, 0.30, 0.20, 0.25, 0.15, np.nan])
    judged = np.array([True, True, True, False, False, False])  # median of the judged texts: 0.30
    w = probe_student.nearness_weights(near, judged, 0.05)
    assert w[:2].tolist() == [1.0, 1.0]  # at or above the judged texts' median
    assert w[2] == pytest.approx(np.exp(-2.0)) and w[3] == pytest.approx(np.exp(-1.0)) and w[4] == pytest.approx(np.exp(-3.0))
    assert w[5] == 1.0  # no nearness recorded (the user's own texts, an older run): full weight
    # Off, or nothing judged (the median of all texts is the reference).
    assert probe_student.nearness_weights(near, judged, 0.0).tolist() == [1.0] * 6
    w = probe_student.nearness_weights(near[:5], np.zeros(5, bool), 0.05)
    assert w[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0] and w[2] == pytest.approx(np.exp(-1.0))


def test_the_head_follows_the_texts_near_the_task_where_far_ones_disagree(tmp_path: Path) -> None:
    from p2m_engine.runs import Run, write_jsonl
    from p2m_engine.students.train import TrainConfig
    from tools.context import ToolContext
    from p2m_engine.data.pool import UNLABELLED
    from tools.train import soft_weights

    # Near texts judged right; as many far copies of the same texts judged wrong. Weighted by nearness, the near
    # ones decide; unweighted, the two cancel out and the head cannot learn the task.
    far = [f"in other news: {t}" for t in SPORT + WEATHER]
    rows = [{"input": t, "probs": {"sport": float(t in SPORT), "weather": float(t in WEATHER)}, "hub": "news/train",
             "judges": "all", "near": 0.5} for t in SPORT + WEATHER]
    rows += [{"input": t, "probs": {"sport": float(t.split(": ")[1] in WEATHER), "weather": float(t.split(": ")[1] in SPORT)},
              "hub": "misc/train", "judges": "encoder", "near": 0.1} for t in far]
    ctx = ToolContext(run=Run.create(tmp_path / "runs", "t"), train=TrainConfig(nearness=0.05))
    write_jsonl(ctx.run.data("soft_labels"), rows)
    soft = [(r["input"], np.array([r["probs"]["sport"], r["probs"]["weather"]])) for r in rows]
    weights, info = soft_weights(ctx, soft)
    assert weights[:8].tolist() == [1.0] * 8 and (weights[8:] < 0.001).all()
    assert info == {"temperature": 0.05, "rows": 16, "weight": 8.0}
    texts, targets = probe_rows(soft, [], LABELS)
    res = probe_student.train_probe_student(texts, targets, LABELS, tmp_path / "m", packaged_minilm_path(), weights=weights)
    assert [label for label, _ in predict(res.model_dir, ["the keeper saved a penalty", "fog and drizzle all morning"])] \
        == ["sport", "weather"]
    off = dataclasses.replace(ctx, train=TrainConfig(nearness=0.0))
    assert soft_weights(off, soft)[0].tolist() == [1.0] * 16
    # The user's own texts (--unlabelled) are the task's inputs: they weigh 1 however far from the demos.
    write_jsonl(ctx.run.data("soft_labels"), rows[:8] + [{**rows[8], "hub": UNLABELLED}] + rows[9:])
    weights, _ = soft_weights(ctx, soft)
    assert weights[8] == 1.0 and weights[9] < 0.001
