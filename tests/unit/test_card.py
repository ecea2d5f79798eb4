"""The model card: Hugging Face front matter with model-index figures equal to the build's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2m_engine.students.card import write_model_card
from p2m_engine.types import Example, TaskSpec


def _front_matter(text: str) -> dict[str, object]:
    head = text.split("---\n")[1]
    return {k: json.loads(v) for k, v in (line.split(": ", 1) for line in head.strip().splitlines())}


@pytest.mark.parametrize(("task_type", "labels", "metrics", "tag", "main"), [
    ("classification", ("ham", "spam"), {"accuracy": 0.9705, "macro_f1": 0.935}, "text-classification", "accuracy"),
    ("extractive-qa", (), {"exact_match": 0.41, "f1": 0.55}, "question-answering", "exact_match"),
    ("generation", (), {"chrf++": 0.3123, "exact_match": 0.05}, "text-generation", "chrf++"),
])
def test_card_per_task_type(tmp_path: Path, task_type: str, labels: tuple[str, ...], metrics: dict[str, float],
                            tag: str, main: str) -> None:
    spec = TaskSpec("Do the task.\nSecond line.", (Example("in one", "out"),), task_type, labels)  # type: ignore[arg-type]
    facts = {"base_model": "base/x", "dataset": "d", "retrieved": 10, "generated": 20, "teacher": "t",
             "metrics": {"test": {"n": 475, "metrics": metrics}, "demos": {"n": 1, "metrics": metrics},
                         "val_score": 0.9}}
    text = write_model_card(tmp_path, spec, facts).read_text()
    header = _front_matter(text)
    assert header["pipeline_tag"] == tag and header["base_model"] == "base/x"
    [index] = header["model-index"]  # type: ignore[misc]
    test = next(r for r in index["results"] if r["dataset"]["split"] == "test")
    assert {m["type"]: m["value"] for m in test["metrics"]} == metrics
    assert f"Main metric: **{main}**" in text and "| test | 475 |" in text
    assert ("**Labels**: ham, spam" in text) == bool(labels)
    assert text.startswith("---\n") and "# Do the task." in text


def test_the_card_counts_teacher_answered_hub_texts_and_cloze_questions(tmp_path: Path) -> None:
    spec = TaskSpec("Answer from the context.", (Example("Question: who? Context: Ann came.", "Ann"),), "extractive-qa")
    facts = {"base_model": "base/x", "dataset": None, "retrieved": 0, "generated": 4, "teacher": "t", "metrics": {}}
    assert "cloze" not in write_model_card(tmp_path, spec, facts).read_text()
    (tmp_path / "p2m_train.json").write_text(json.dumps({"sources": {"labelled": 12, "generated": 4, "cloze": 900}}))
    text = write_model_card(tmp_path, spec, facts).read_text()
    assert "12 real hub texts labelled or answered by the teacher" in text
    assert "900 cloze questions made from hub passages without the teacher" in text
