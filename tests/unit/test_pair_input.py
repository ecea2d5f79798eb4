"""Two-text inputs: found on the training inputs, encoded as a sentence pair, saved with the model and reused."""

from __future__ import annotations

from pathlib import Path

from p2m_engine.students import pair_input
from p2m_engine.students.evaluate import predict
from p2m_engine.students.train import TrainConfig, train_classifier
from p2m_engine.types import Example

PAIRS = [f"Sentence 1: the cat number {i} sat on the mat.\nSentence 2: a cat {i} was sitting on a mat." for i in range(12)]


def test_a_two_field_template_is_found_and_split() -> None:
    template = pair_input.pair_template(PAIRS)
    assert template is not None and template.names == ("sentence_1", "sentence_2")
    first, second = pair_input.split_pairs(template, [PAIRS[3], "no markers in this one"])
    assert first == ["the cat number 3 sat on the mat.", "no markers in this one"]
    assert second == ["a cat 3 was sitting on a mat.", ""]


def test_plain_texts_one_field_or_three_fields_are_not_pairs() -> None:
    assert pair_input.pair_template(["just a sentence", "another one"]) is None
    assert pair_input.pair_template([f"Question: q{i}?" for i in range(5)]) is None
    assert pair_input.pair_template([f"Premise: p{i}. Hypothesis: h{i}. Context: c{i}." for i in range(5)]) is None
    # A template most inputs do not fit is not used.
    assert pair_input.pair_template(PAIRS[:5] + ["plain text"] * 5) is None


def test_pairs_are_tokenized_as_two_segments(tiny_encoder: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_encoder))
    template = pair_input.pair_template(PAIRS)
    enc = pair_input.tokenize(tok, PAIRS[:2], template)
    assert enc["input_ids"] == tok(*pair_input.split_pairs(template, PAIRS[:2]))["input_ids"]
    assert all(1 in types for types in enc["token_type_ids"])  # the second text is segment 1
    assert pair_input.tokenize(tok, PAIRS[:2], None)["input_ids"] == tok(PAIRS[:2])["input_ids"]


def _rows() -> list[Example]:
    return [Example(p, "yes" if i % 2 else "no") for i, p in enumerate(PAIRS)]


def test_a_pair_student_saves_its_template_and_predicts_with_it(tiny_encoder: Path, tmp_path: Path) -> None:
    config = TrainConfig(base_model=str(tiny_encoder), epochs=1, batch_size=4, max_steps=2, min_steps=0)
    res = train_classifier(_rows(), [], ("no", "yes"), tmp_path / "m", config)
    assert res.config["pair_fields"] == ["sentence_1", "sentence_2"]
    assert pair_input.load(res.model_dir) == pair_input.pair_template([e.input for e in _rows()])
    assert {label for label, _ in predict(res.model_dir, PAIRS[:4])} <= {"no", "yes"}
    off = train_classifier(_rows(), [], ("no", "yes"), tmp_path / "off", TrainConfig(**{**config.__dict__, "pair": False}))
    assert off.config["pair_fields"] is None and pair_input.load(off.model_dir) is None
