"""Failure analysis on a hand-made predictions file: recall, precision, confusions, errors, weak labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2m_engine.eval.analysis import analyze_failures
from p2m_engine.errors import DatasetError

LABELS = ("billing", "tech", "sales")


def _write(path: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    path.write_text("".join(json.dumps({"input": i, "gold": g, "prediction": p, "probability": q, "correct": g == p}) + "\n"
                            for i, g, p, q in rows))
    return path


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    rows = [
        # billing: 4 of 4 right
        *[(f"invoice {k}", "billing", "billing", 0.9) for k in range(4)],
        # tech: 1 of 4 right; 2 called billing, 1 called sales
        ("router down", "tech", "tech", 0.8),
        ("app crashes on start", "tech", "billing", 0.95),
        ("password reset loop", "tech", "billing", 0.6),
        ("screen flickers", "tech", "sales", 0.7),
        # sales: 3 of 4 right; 1 called billing
        *[(f"quote {k}", "sales", "sales", 0.85) for k in range(3)],
        ("discount for 50 seats", "sales", "billing", 0.55),
    ]
    return _write(tmp_path / "dev.jsonl", rows)


def test_recall_precision_and_confusions(predictions: Path) -> None:
    report = analyze_failures(predictions, LABELS)
    assert report.split == "dev" and report.n == 12
    assert report.accuracy == pytest.approx(8 / 12)
    billing, tech, sales = (report.stats(x) for x in LABELS)
    assert billing.recall == 1.0 and billing.precision == pytest.approx(4 / 7)
    assert tech.recall == 0.25 and tech.precision == 1.0
    assert sales.recall == 0.75 and sales.precision == pytest.approx(3 / 4)
    pairs = [(c.gold, c.predicted, c.count) for c in report.confusions]
    assert pairs == [("tech", "billing", 2), ("sales", "billing", 1), ("tech", "sales", 1)]
    assert report.confused_with("tech") == ["billing", "sales"]


def test_weak_labels_below_the_mean_or_the_threshold(predictions: Path) -> None:
    # Mean recall (1 + 0.25 + 0.75) / 3 = 0.667: only tech is below it.
    assert analyze_failures(predictions, LABELS).weak_labels == ("tech",)
    # With a threshold of 0.9, sales (0.75) is weak too; weakest first.
    assert analyze_failures(predictions, LABELS, threshold=0.9).weak_labels == ("tech", "sales")


def test_error_examples_of_weak_labels_most_confident_first(predictions: Path) -> None:
    report = analyze_failures(predictions, LABELS, examples_per_label=2)
    assert [e.input for e in report.missed("tech")] == ["app crashes on start", "screen flickers"]
    assert report.missed("tech")[0].predicted == "billing" and report.missed("tech")[0].probability == 0.95
    # Only weak labels get examples: billing is strong, so its false positives are not collected for it.
    assert report.mistaken_for("tech") == []
    assert {e.gold for e in report.errors} == {"tech"}


def test_false_positives_of_a_weak_label(tmp_path: Path) -> None:
    rows = [("a", "x", "y", 0.9), ("b", "x", "x", 0.9), ("c", "x", "x", 0.9), ("d", "y", "y", 0.9), ("e", "y", "x", 0.8)]
    report = analyze_failures(_write(tmp_path / "p.jsonl", rows), ("x", "y"))
    assert report.weak_labels == ("y",)  # recall 1/2 against x's 2/3
    assert [e.input for e in report.missed("y")] == ["e"]  # a y the student called x
    assert [e.input for e in report.mistaken_for("y")] == ["a"]  # an x the student called y


def test_summary_names_weak_labels_and_pairs(predictions: Path) -> None:
    text = analyze_failures(predictions, LABELS).summary()
    assert "dev: accuracy 0.667 on 12" in text
    assert "tech (recall 0.25, precision 1.00, n=4)" in text
    assert "tech->billing x2" in text
    assert "billing (recall" not in text


def test_perfect_predictions_have_no_weak_label(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [("a", "x", "x", 0.9), ("b", "y", "y", 0.8)])
    report = analyze_failures(path, ("x", "y", "z"), threshold=0.9)
    assert report.weak_labels == () and report.confusions == () and report.errors == ()
    # A label absent from the split has no recall and is not judged weak.
    assert report.stats("z").recall is None and report.stats("z").support == 0
    assert report.to_dict()["labels"][2]["label"] == "z"


def test_empty_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no prediction rows"):
        analyze_failures(_write(tmp_path / "e.jsonl", []), ("x",))
    with pytest.raises(DatasetError, match="No such file"):
        analyze_failures(tmp_path / "missing.jsonl", ("x",))


def test_a_saved_failure_analysis_reads_back_equal(predictions: Path, tmp_path: Path) -> None:
    from p2m_engine.eval.analysis import read_failures, write_failures

    report = analyze_failures(predictions, ["a", "b", "c"], split="dev", threshold=0.9)
    again = read_failures(write_failures(report, tmp_path / "failures.json"))
    assert again == report and again.missed(report.weak_labels[0]) == report.missed(report.weak_labels[0])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a failure analysis"):
        read_failures(tmp_path / "bad.json")
