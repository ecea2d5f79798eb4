"""Extractive QA student: question/context splitting, windowing, answer decoding, and a tiny span model that
learns, predicts across windows, reloads with plain transformers and is scored with SQuAD EM/F1."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from p2m_engine.students.qa_text import (Window, best_answer, field_names, split_fields, split_question_context,
                                to_items)
from p2m_engine.types import Example

WORDS = "apple river stone cloud green table music paper window garden silver orange".split()


# --- splitting an input into question and context -----------------------------------------------------------


def test_question_then_context() -> None:
    q, c = split_question_context("Question: Who wrote it? Context: The book was written by Ann in 1990.")
    assert (q, c) == ("Who wrote it?", "The book was written by Ann in 1990.")


def test_context_then_question_and_other_field_names() -> None:
    q, c = split_question_context("passage: The river flows north through the valley.\nquery: Which way?")
    assert (q, c) == ("Which way?", "The river flows north through the valley.")


def test_several_short_fields_keep_their_labels_in_the_question() -> None:
    q, c = split_question_context("Title: Rivers Question: Which way? Context: The river flows north all year.")
    assert c == "The river flows north all year."
    assert q == "Title: Rivers Question: Which way?"


def test_no_fields_means_all_context() -> None:
    assert split_question_context("  The river flows north.  ") == ("", "The river flows north.")
    assert split_fields("The river flows north.") == []


def test_a_question_without_punctuation_keeps_its_last_words() -> None:
    q, c = split_question_context("Who wrote the book Context: The book was written by Ann.")
    assert (q, c) == ("Who wrote the book", "The book was written by Ann.")


def test_field_names_ignore_label_shaped_text_inside_one_context() -> None:
    rows = [f"Question: q{i}? Context: Some text about item {i} here." for i in range(3)]
    rows.append("Question: who? Context: Two players went to the Pro Bowl: Davis and Kuechly, both linebackers.")
    names = field_names(rows)
    assert names == ("Context", "Question")
    q, c = split_question_context(rows[-1], names)
    assert q == "who?" and c.startswith("Two players") and c.endswith("linebackers.")


def test_to_items_finds_the_first_occurrence_and_drops_answers_outside_the_context() -> None:
    rows = [Example("Question: Which colour? Context: a red car and a red bus", "red"),
            Example("Question: Is it red? Context: a blue car on the road", "red"),  # answer only in the question
            Example("Question: Which? Context: a blue car", "green")]  # answer nowhere
    items, dropped = to_items(rows, ("Context", "Question"))
    assert dropped == 2 and len(items) == 1
    assert items[0].context[items[0].answer_start:].startswith("red") and items[0].answer_start == 2


# --- decoding ------------------------------------------------------------------------------------------------


def test_best_answer_pairs_start_and_end_over_windows() -> None:
    context = "aa bb cc dd ee"
    offsets = [None, (0, 2), (3, 5), (6, 8), None]
    first = Window([0, 5, 0, 0, 0], [0, 0, 1, 0, 0], offsets)  # "aa bb": 6
    later = Window([0, 0, 4, 0, 9], [0, 0, 0, 4, 9], [None, (6, 8), (9, 11), (12, 14), None])  # "dd ee": 8
    assert best_answer([first, later], context) == "dd ee"
    # The end may not come before the start, and a span may not exceed max_answer_tokens.
    backwards = Window([0, 0, 0, 9, 0], [0, 9, 0, 1, 0], offsets)
    assert best_answer([backwards], context) == "cc"
    assert best_answer([first], context, max_answer_tokens=1) == "aa"
    assert best_answer([Window([5, 0], [5, 0], [None, None])], context) == ""


# --- a tiny span model --------------------------------------------------------------------------------------


def _row(rng: random.Random, n_words: tuple[int, int] = (8, 20)) -> Example:
    words = [rng.choice(WORDS) for _ in range(rng.randint(*n_words))]
    words.insert(rng.randrange(len(words) + 1), "zebra")
    return Example(f"Question: which animal? Context: {' '.join(words)}", "zebra")


@pytest.fixture(scope="module")
def tiny_qa_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-size-32 BERT built from a config, with the packaged MiniLM tokenizer."""
    from tests.tiny import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-qa-bert"), hidden=32, max_positions=512)


@pytest.fixture(scope="module")
def trained(tiny_qa_base: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The tiny model trained 40 steps to point at "zebra" in windows of 32 tokens."""
    from p2m_engine.students.qa import QAConfig, train_qa
    from p2m_engine.students.train import TrainConfig

    rng = random.Random(0)
    train = [_row(rng) for _ in range(64)] + [Example("Question: which animal? Context: no animal here", "zebra")]
    val = [_row(rng) for _ in range(8)]
    cfg = TrainConfig(base_model=str(tiny_qa_base), max_steps=40, learning_rate=5e-3, batch_size=8, bf16="off")
    qa = QAConfig(max_length=32, doc_stride=8, max_evals=2)
    return train_qa(train, val, tmp_path_factory.mktemp("qa") / "model", cfg, qa=qa)


def test_training_lowers_the_loss_and_records_drops(trained) -> None:  # type: ignore[no-untyped-def]
    losses = [h["loss"] for h in trained.config["log_history"] if "loss" in h]
    assert len(losses) >= 3 and losses[-1] < losses[0] / 2
    assert trained.config["dropped_no_answer_in_context"] == {"train": 1, "val": 0}
    assert trained.n_train == 64 and trained.n_val == 8
    assert trained.config["field_names"] == ["Context", "Question"]
    assert trained.val_score == 1.0 and trained.config["val_f1"] == 1.0
    assert not (trained.model_dir.parent / "model-checkpoints").exists()


def test_encode_marks_the_answer_window_and_cls_elsewhere(tiny_qa_base: Path) -> None:
    from transformers import AutoTokenizer

    from p2m_engine.students.qa import QAConfig, encode

    tok = AutoTokenizer.from_pretrained(str(tiny_qa_base))
    context = " ".join(["apple"] * 60) + " zebra stripes " + " ".join(["river"] * 5)
    items, _ = to_items([Example(f"Question: which? Context: {context}", "zebra stripes")])
    feats = encode(tok, items, QAConfig(max_length=32, doc_stride=8), with_labels=True)
    assert len(feats.sample) > 2 and set(feats.sample) == {0}
    hits = [i for i, s in enumerate(feats.start_positions) if s != 0]
    assert hits and hits[0] > 0 and feats.start_positions[0] == 0 == feats.end_positions[0]
    for i in hits:  # the labelled tokens cover exactly the answer characters
        s, e = feats.offsets[i][feats.start_positions[i]], feats.offsets[i][feats.end_positions[i]]
        assert s is not None and e is not None and context[s[0] : e[1]] == "zebra stripes"


def test_a_long_context_is_answered_from_a_later_window(trained) -> None:  # type: ignore[no-untyped-def]
    from p2m_engine.students.qa import predict_qa

    rng = random.Random(1)
    filler = " ".join(rng.choice(WORDS) for _ in range(120))
    long_input = f"Question: which animal? Context: {filler} zebra {filler[:40]}"
    short_input = "Context: green zebra table Question: which animal?"  # fields in the other order
    assert predict_qa(trained.model_dir, [long_input, short_input]) == ["zebra", "zebra"]


def test_saved_folder_loads_with_plain_transformers(trained) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.pipelines import SUPPORTED_TASKS

    tok = AutoTokenizer.from_pretrained(str(trained.model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(trained.model_dir)).eval()
    enc = tok("which animal?", "green zebra table", return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc)
    s, e = int(out.start_logits.argmax()), int(out.end_logits.argmax())
    assert tok.decode(enc["input_ids"][0][s : e + 1]) == "zebra"
    assert json.loads((trained.model_dir / "p2m_qa.json").read_text())["max_length"] == 32
    if "question-answering" in SUPPORTED_TASKS:  # transformers 5 dropped this pipeline; 4.x still has it
        from transformers import pipeline

        qa = pipeline("question-answering", model=str(trained.model_dir))
        assert qa(question="which animal?", context="green zebra table")["answer"] == "zebra"


def test_evaluate_student_scores_squad_em_and_f1(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from p2m_engine.students import evaluate_student, predict_student

    inputs = ["Question: which animal? Context: apple zebra river",
              "Question: which animal? Context: the zebra stone",
              "Question: which animal? Context: zebra crossing cloud",
              "Question: which animal? Context: paper zebra lion"]
    assert predict_student("extractive-qa", trained.model_dir, inputs) == ["zebra"] * 4
    gold = ["zebra", "the zebra", "zebra crossing", "lion"]
    report = evaluate_student("extractive-qa", trained.model_dir, [Example(i, g) for i, g in zip(inputs, gold)],
                              "test", tmp_path / "pred.jsonl")
    # By hand: "zebra" exact; "the zebra" normalises to "zebra"; "zebra crossing" F1 = 2*(1*0.5)/1.5; "lion" 0.
    assert report.n == 4
    assert report.metrics["exact_match"] == pytest.approx(0.5)
    assert report.metrics["f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, True, False, False]


def test_training_without_any_answer_in_context_is_refused(tiny_qa_base: Path, tmp_path: Path) -> None:
    from p2m_engine.errors import TrainingError
    from p2m_engine.students.qa import train_qa
    from p2m_engine.students.train import TrainConfig

    with pytest.raises(TrainingError, match="answer inside its context"):
        train_qa([Example("Question: a? Context: b c d", "zzz")], [], tmp_path / "m",
                 TrainConfig(base_model=str(tiny_qa_base)))


# --- base models ---------------------------------------------------------------------------------------------


def test_search_models_offers_encoders_for_qa_with_qa_trained_heads_first(tiny_qa_base: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from p2m_engine.students import models

    squad_model = tmp_path / "bigger-squad"  # bigger than tiny_qa_base, but saved with a span head
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128)
    BertForQuestionAnswering(config).save_pretrained(str(squad_model))
    AutoTokenizer.from_pretrained(str(tiny_qa_base)).save_pretrained(str(squad_model))
    cached = [models.describe_local(p, "hf-cache") for p in (tiny_qa_base, squad_model)]
    assert cached[0] and cached[1] and cached[1].params > cached[0].params
    monkeypatch.setattr(models, "_cached_models", lambda: [c for c in cached if c])

    qa = models.search_models("extractive-qa")
    assert qa[0].path == str(squad_model) and "already trained for QA" in qa[0].reason
    assert all("new span head" in c.reason for c in qa[1:]) and len(qa) == 3
    # Classification keeps smallest first and its plain reasons.
    cls = models.search_models("classification")
    assert [c.params for c in cls] == sorted(c.params for c in cls)
    assert all("span head" not in c.reason for c in cls)


def test_without_enough_validation_rows_a_tenth_of_training_is_held_back(tiny_qa_base: Path, tmp_path: Path) -> None:
    from p2m_engine.students.qa import QAConfig, train_qa
    from p2m_engine.students.train import TrainConfig

    rng = random.Random(2)
    rows = [_row(rng) for _ in range(20)]
    cfg = TrainConfig(base_model=str(tiny_qa_base), max_steps=2, batch_size=8, bf16="off")
    res = train_qa(rows, rows[:1], tmp_path / "m", cfg, qa=QAConfig(max_length=32, doc_stride=8, max_evals=1))
    assert (res.n_train, res.n_val, res.config["val_held_from_train"]) == (18, 3, 2)
    assert 0.0 <= res.val_score <= 1.0
