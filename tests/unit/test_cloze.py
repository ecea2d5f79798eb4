"""Cloze questions made from hub passages for an extractive-QA student (p2m_engine.data.cloze), and the
train_model tool training on them beside the task's rows, never validating on them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.context import Context
from p2m_engine.data.cloze import ClozeConfig, answers, cloze_pairs, qualifies, question
from p2m_engine.data.hub_pairs import Shape
from p2m_engine.runs import Run, read_jsonl
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example, TaskSpec

QA = TaskSpec("Answer the question by copying the shortest span of the context.",
              (Example("Question: Who built the mill? Context: The old mill by the river was built by Jonas Berg in "
                       "1820. It ground wheat for the valley until the war.", "Jonas Berg"),
               Example("Question: When did the ferry stop? Context: The island ferry ran daily for a century. It "
                       "stopped in 1971 when the new bridge to Port Ellen opened.", "1971")),
              "extractive-qa")
PASSAGES = [
    "The harbour of Kirkwall was rebuilt by the Orkney Council in 1987. Fishing boats and ferries share its piers, "
    "and in summer the large cruise ships anchor in the sheltered bay beyond the old stone breakwater.",
    "The Tay Bridge opened in 1878 and fell in a storm the next winter. Its replacement carried 75 trains a day "
    "across the wide grey firth, and it still stands today beside the broken stumps of the first one.",
    "Glasgow University moved to Gilmorehill in 1870. Its tower was designed by George Gilbert Scott, and the "
    "cloisters below it were finished by his eldest son some twenty years later, in a plainer style.",
    "The lighthouse at Dunnet Head was built by Robert Stevenson. It stands 105 metres above the Pentland Firth, "
    "on the most northerly point of the mainland, and on clear nights its light reaches far out to sea.",
    "Database: shop Tables: orders(order_id, customer_id, placed_at, total_price, currency, status) "
    "customers(customer_id, name, city, country, email, joined_at) "
    "products(product_id, name, price, stock, supplier_id)",  # a table
    "A single long sentence about the Caledonian Canal and Thomas Telford that runs on past the locks of Fort "
    "Augustus and along the dark and windy shores of Loch Ness and it never gives a second one at all",
]


def _hub(root: Path, texts: list[str]) -> Path:
    folder = root / "hub" / "notes"
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"name": "notes", "task_type": "generation"}))
    (folder / "train.jsonl").write_text("".join(json.dumps({"input": t, "output": "-"}) + "\n" for t in texts))
    return root / "hub"


def test_answers_are_years_numbers_and_names_but_not_sentence_starts_contractions_or_markers() -> None:
    found = {(a, wh) for a, wh, _ in answers("Pete Carroll coached the team from 2001 to 2009 and won 97 games.")}
    assert {("Pete Carroll", "What"), ("2001", "When"), ("2009", "When"), ("97", "How many")} <= found
    assert answers("Rain fell all day over the quiet town.") == []  # a lone capital that starts the sentence
    assert all(a not in ("Don't", "Person1") for a, _, _ in answers("Well, Don't worry, said Person1: fine by Anna."))
    assert ("Anna", "What") in {(a, wh) for a, wh, _ in answers("Well, Don't worry, said Person1: fine by Anna.")}


def test_a_question_is_the_sentence_without_its_answer_led_by_the_question_word() -> None:
    sentence = "The ferry stopped running in 1971 after the storm."
    start = sentence.index("1971")
    exact = question(sentence, "1971", "When", start, random.Random(0), ClozeConfig(drop=0.0, shuffle=0.0))
    assert exact == "When the ferry stopped running in after the storm?"
    noisy = question(sentence, "1971", "When", start, random.Random(0), ClozeConfig(drop=0.5, shuffle=3.0))
    assert noisy.startswith("When ") and noisy.endswith("?") and "1971" not in noisy and noisy != exact
    assert set(noisy[5:-1].split()) <= set(exact[5:-1].split())


def test_only_extractive_qa_with_a_question_field_and_a_latin_script_qualifies() -> None:
    assert qualifies(QA)[0] is not None
    assert qualifies(TaskSpec("Summarise.", (Example("Question: why? Context: a b c.", "x"),), "generation"))[0] is None
    plain = TaskSpec("Copy the name.", (Example("The mill was built by Jonas Berg.", "Jonas Berg"),), "extractive-qa")
    assert "not one question field" in qualifies(plain)[1]
    kana = TaskSpec("Answer.", tuple(Example(f"質問: だれ？ 文脈: {t}は東京で生まれた。", t)
                                     for t in ("山田", "田中")), "extractive-qa")
    assert qualifies(kana)[0] is None


def test_cloze_rows_have_the_demos_shape_an_answer_once_in_the_passage_and_skip_tables_and_held_out_text(
        tmp_path: Path) -> None:
    hub = _hub(tmp_path, PASSAGES)
    from p2m_engine.data.synth import normalize

    held = {normalize(PASSAGES[2])}
    result = cloze_pairs(QA, [hub], ClozeConfig(count=20), exclude=held)
    shape = Shape.of([e.input for e in QA.examples])
    assert shape.template is not None and result.rows and result.sources == {"notes": len(result.rows)}
    contexts = set()
    for row in result.rows:
        fields = shape.template.split(row.input)
        assert fields is not None and fields["question"].endswith("?")
        assert fields["context"].count(row.output) == 1 and row.output not in fields["question"]
        contexts.add(fields["context"])
    assert contexts <= {PASSAGES[0], PASSAGES[1], PASSAGES[3]}  # no table, no single sentence, no held-out text
    assert cloze_pairs(QA, [hub], ClozeConfig(count=20), exclude=held).rows == result.rows  # same seed, same rows
    assert cloze_pairs(QA, [hub], ClozeConfig(count=0)).rows == []


@pytest.mark.parametrize("count", [0, 30])
def test_train_model_trains_on_cloze_rows_but_never_validates_on_them(tmp_path: Path, count: int) -> None:
    from tests.tiny import tiny_bert
    from tools.train import train_model

    hub = _hub(tmp_path, PASSAGES)
    base = tiny_bert(tmp_path / "tiny", hidden=32, max_positions=512)
    ctx = Context(run=Run.create(tmp_path, "t"), hub_dirs=[hub],
                  train=TrainConfig(max_steps=2, batch_size=4, bf16="off", cloze=count))
    rows = [Example(f"Question: Who rang bell {i}? Context: Bell {i} was rung by Ada Reid at noon. It was loud.",
                    "Ada Reid") for i in range(12)]
    ctx.run.data("generated").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in rows))
    state: dict[str, Any] = {"task": QA.to_dict(), "base_model": str(base)}
    _, art = train_model.func(SimpleNamespace(context=ctx, state=state))  # type: ignore[attr-defined]
    cloze_path = ctx.run.data("cloze")
    val = {r["input"] for r in read_jsonl(ctx.run.data("val"))}
    if count == 0:
        assert not cloze_path.exists() and "cloze" not in art["sources"] and art["n_train"] + art["n_val"] == 12
        return
    made = [r["input"] for r in read_jsonl(cloze_path)]
    assert made and art["sources"]["cloze"] == len(made) and art["cloze"]["count"] == len(made)
    assert art["n_train"] + art["n_val"] == 12 + len(made) and not val & set(made)
    # The task's rows alone validate: the student held none of the training rows (cloze ones among them) back.
    record = json.loads((Path(art["model_dir"]) / "p2m_train.json").read_text())
    assert record["val_held_from_train"] == 0 and art["n_val"] == len(val) >= 1
    _, again = train_model.func(SimpleNamespace(context=ctx, state=state))  # type: ignore[attr-defined]
    assert again["cloze"]["reused"] and [r["input"] for r in read_jsonl(cloze_path)] == made
