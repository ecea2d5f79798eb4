"""Prompt parsing: instruction, demonstrations, task type and labels; bad prompts raise TaskSpecError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2m_engine.errors import TaskSpecError
from p2m_engine.task import (
    MAX_PROMPT_CHARS,
    infer_labels,
    infer_task_type,
    labels_in_instruction,
    parse_task,
    read_prompt,
)
from p2m_engine.types import Example

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_DATASETS = sorted(p.parent for p in SHARED_DATA.glob("*/prompt.txt")) if SHARED_DATA.is_dir() else []


# --- the shared prompts: generic inference must recover the dataset's task type and labels ---------------


@pytest.mark.parametrize("folder", _DATASETS or [None], ids=[p.name for p in _DATASETS] or ["no-shared-data"])
def test_shared_prompts_task_type_and_labels(folder: Path | None) -> None:
    if folder is None:
        pytest.skip(f"no shared prompts under {SHARED_DATA}")
    info_path = folder / "dataset_info.json"
    if not info_path.is_file():
        pytest.skip(f"{folder.name} has no dataset_info.json")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    spec = parse_task(read_prompt(str(folder / "prompt.txt")))

    assert spec.instruction
    assert len(spec.examples) >= 1
    if info.get("task_type") == "classification":
        assert spec.task_type == "classification", folder.name
        assert set(spec.labels) == set(info["labels"]), folder.name
        assert len(spec.labels) == len(set(spec.labels)), "labels must not repeat"
    else:
        from p2m_engine.types import canonical_task_type

        assert spec.task_type == canonical_task_type(info["task_type"]), folder.name
        assert spec.labels == ()


# --- structure of a parsed prompt -------------------------------------------------------------------------


def test_instruction_is_text_before_first_demo() -> None:
    text = (
        "Decide whether the review is positive or negative.\n"
        "Answer with one word.\n"
        "\n"
        'input="great film"\noutput="positive"\n'
        "This note between demos is not part of the instruction.\n"
        'input="dull plot"\noutput="negative"\n'
    )
    spec = parse_task(text)
    assert spec.instruction == "Decide whether the review is positive or negative.\nAnswer with one word."
    assert "input" not in spec.instruction
    assert "note between demos" not in spec.instruction
    assert spec.examples == (Example("great film", "positive"), Example("dull plot", "negative"))


def test_demos_with_escaped_quotes_are_json_decoded() -> None:
    text = (
        "Is the quote sarcastic? Answer yes or no.\n\n"
        'input="He said \\"great, just great\\" and left."\n'
        'output="yes"\n'
        'input="She wrote \\"thank you\\"\\nand smiled."\n'
        'output="no"\n'
    )
    spec = parse_task(text)
    assert spec.examples[0].input == 'He said "great, just great" and left.'
    assert spec.examples[1].input == 'She wrote "thank you"\nand smiled.'
    assert [e.output for e in spec.examples] == ["yes", "no"]
    assert spec.task_type == "classification"
    assert set(spec.labels) == {"yes", "no"}


def test_colon_style_fields_are_parsed() -> None:
    text = (
        "Label each message.\n"
        "Input: hello there\nOutput: friendly\n"
        "Input: go away\nOutput: rude\n"
        "Input: hi again\nOutput: friendly\n"
    )
    spec = parse_task(text)
    assert spec.instruction == "Label each message."
    assert spec.examples == (
        Example("hello there", "friendly"),
        Example("go away", "rude"),
        Example("hi again", "friendly"),
    )
    assert spec.task_type == "classification"
    assert set(spec.labels) == {"friendly", "rude"}


def test_enumeration_in_instruction_completes_labels() -> None:
    # Only "spam" is demonstrated, but the instruction enumerates both options.
    spec = parse_task('Is this SMS spam or ham?\n\ninput="win cash now"\noutput="spam"\n')
    assert spec.task_type == "classification"
    assert set(spec.labels) == {"spam", "ham"}


def test_unrelated_enumeration_does_not_invent_labels() -> None:
    instruction = "Describe the good and bad points of the product."
    examples = [Example("a phone", "nice screen but weak battery life overall")]
    assert infer_labels(instruction, examples) == ("nice screen but weak battery life overall",)


def test_translation_with_unique_long_outputs_is_generation() -> None:
    text = (
        "Translate to French.\n\n"
        'input="The cat sleeps on the warm sofa."\noutput="Le chat dort sur le canapé chaud."\n'
        'input="We are going to the market tomorrow."\noutput="Nous allons au marché demain."\n'
        'input="Where is the train station?"\noutput="Où est la gare ?"\n'
    )
    spec = parse_task(text)
    assert spec.task_type == "generation"
    assert spec.labels == ()


def test_single_repeated_output_without_enumeration_is_generation() -> None:
    # One distinct output and no enumerated options: not enough to call it a classifier.
    spec = parse_task('Translate to French\n\ninput="cat"\noutput="chat"\n')
    assert spec.task_type == "generation"
    spec = parse_task('Answer the question\n\ninput="a"\noutput="yes"\ninput="b"\noutput="yes"\n')
    assert spec.task_type == "generation"
    assert spec.labels == ()


def test_infer_task_type_directly() -> None:
    ex = [Example("a", "pos"), Example("b", "neg"), Example("c", "pos")]
    assert infer_task_type(ex, ("pos", "neg"), "Classify.") == "classification"
    long_ex = [Example("a", "one two three four five"), Example("b", "one two three four five")]
    assert infer_task_type(long_ex, ("one two three four five",), "Summarise.") == "generation"


def test_labels_in_instruction() -> None:
    assert labels_in_instruction("Classify as A, B, or C/D.") == ["A", "B", "C/D"]
    assert labels_in_instruction("Is it spam or ham?") == ["spam", "ham"]
    assert labels_in_instruction("Summarise the article.") == []


# --- prompts written for these tests, unlike any benchmark prompt: the heuristics must not fit only those ----

_OWN_PROMPTS = {
    # A four-team list with a two-word last option, half of it demonstrated.
    "route": ('Route each customer email to a team: billing, shipping, returns, or technical support.\n\n'
              'input="I was charged twice for order 1182."\noutput="billing"\n\n'
              'input="The parcel has been stuck in Leeds for a week."\noutput="shipping"\n',
              "classification", {"billing", "shipping", "returns", "technical support"}),
    # Options in parentheses separated by slashes.
    "triage": ('Triage the support ticket by urgency (low / medium / high).\n\n'
               'input="Site down for all users since 9am"\noutput="high"\n\ninput="Typo on the pricing page"\noutput="low"\n',
               "classification", {"low", "medium", "high"}),
    "language": ('Which language is the sentence written in? English, German or Spanish.\n\n'
                 'input="Wo ist der Bahnhof?"\noutput="German"\n\ninput="Where is the station?"\noutput="English"\n',
                 "classification", {"English", "German", "Spanish"}),
    # Two options followed by a noun: the noun is not part of the last label.
    "two": ('Is the comment positive or negative sentiment?\n\ninput="Loved every minute"\noutput="positive"\n',
            "classification", {"positive", "negative"}),
    "passive": ('Rewrite the sentence in the passive voice.\n\ninput="The chef cooked the meal."\n'
                'output="The meal was cooked by the chef."\n\ninput="Lightning struck the old oak."\n'
                'output="The old oak was struck by lightning."\n', "generation", set()),
    "span": ('Copy from the passage the words that answer the question.\n\n'
             'input="Question: Who built the bridge? Passage: The bridge was built by Roebling in 1883 and opened in May."\n'
             'output="Roebling"\n\ninput="Question: When did it open? Passage: The bridge was built by Roebling in 1883 '
             'and opened in May."\noutput="May"\n', "extractive-qa", set()),
    "title": ('Write a one-line title for the recipe.\n\n'
              'input="Boil pasta. Fry garlic in oil, add chili, toss with pasta and parsley."\noutput="Spicy garlic spaghetti"\n\n'
              'input="Whisk eggs with sugar, fold in flour, bake 25 minutes at 180C."\noutput="Simple sponge cake"\n',
              "generation", set()),
}


@pytest.mark.parametrize("name", list(_OWN_PROMPTS))
def test_prompts_unlike_the_benchmarks_parse_to_their_task_type_and_labels(name: str) -> None:
    text, task_type, labels = _OWN_PROMPTS[name]
    spec = parse_task(text)
    assert spec.task_type == task_type and set(spec.labels) == labels


# --- bad prompts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_prompt_raises(text: str) -> None:
    with pytest.raises(TaskSpecError, match="empty"):
        parse_task(text)


def test_no_demonstrations_raises() -> None:
    with pytest.raises(TaskSpecError, match="no demonstrations"):
        parse_task("Classify these messages please")


def test_demos_without_instruction_raise() -> None:
    with pytest.raises(TaskSpecError, match="no instruction"):
        parse_task('input="win cash"\noutput="spam"\ninput="hi"\noutput="ham"\n')


def test_contradictory_demonstrations_raise() -> None:
    text = 'Spam or ham?\ninput="win cash"\noutput="spam"\ninput="win cash"\noutput="ham"\n'
    with pytest.raises(TaskSpecError, match="Contradictory"):
        parse_task(text)


def test_repeated_identical_demonstrations_are_not_contradictory() -> None:
    text = 'Spam or ham?\ninput="win cash"\noutput="spam"\ninput="win cash"\noutput="spam"\n'
    assert parse_task(text).task_type == "classification"


def test_prompt_longer_than_limit_raises() -> None:
    base = 'Spam or ham?\ninput="win cash"\noutput="spam"\n'
    at_limit = base + "#" * (MAX_PROMPT_CHARS - len(base))
    assert len(at_limit) == MAX_PROMPT_CHARS
    parse_task(at_limit)  # exactly at the limit is accepted
    with pytest.raises(TaskSpecError, match="limit"):
        parse_task(at_limit + "#")


# --- read_prompt --------------------------------------------------------------------------------------------


def test_read_prompt_missing_txt_path_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskSpecError, match="No prompt file"):
        read_prompt("x.txt")


def test_read_prompt_non_utf8_file_raises(tmp_path: Path) -> None:
    p = tmp_path / "p.txt"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TaskSpecError, match="not UTF-8"):
        read_prompt(str(p))


def test_read_prompt_reads_file(tmp_path: Path) -> None:
    content = 'Spam or ham?\ninput="é"\noutput="spam"\n'
    p = tmp_path / "prompt.txt"
    p.write_text(content, encoding="utf-8")
    assert read_prompt(str(p)) == content


@pytest.mark.parametrize(
    "text",
    [
        'Spam or ham?\n\ninput="win cash"\noutput="spam"\n',
        "Classify these messages please",
        "   ",
    ],
)
def test_read_prompt_returns_plain_text_unchanged(text: str) -> None:
    assert read_prompt(text) == text


def test_task_json_without_label_descriptions_still_loads() -> None:
    from p2m_engine.types import TaskSpec

    old = {"instruction": "Spam or ham?", "examples": [{"input": "win", "output": "spam"}],
           "task_type": "classification", "labels": ["spam", "ham"]}  # a task.json from before the field
    spec = TaskSpec.from_dict(old)
    assert spec.label_descriptions == {} and spec.to_dict() == old
    described = TaskSpec.from_dict({**old, "label_descriptions": {"spam": "unsolicited ads"}})
    assert described.label_descriptions == {"spam": "unsolicited ads"}
    assert TaskSpec.from_dict(described.to_dict()) == described


# --- malformed demonstrations: refused with the line number, never misparsed (issue 14) ----------------------

GOOD = 'Is this SMS spam or ham?\n\ninput="win cash"\noutput="spam"\n\ninput="see you"\noutput="ham"\n'


@pytest.mark.parametrize(("prompt", "message"), [
    (GOOD.replace('input="win cash"', 'input="win cash'), "Line 3: the input value"),
    (GOOD.replace('output="spam"', 'output=spam"'), "Line 4: the output value"),
    (GOOD + '\ninput="one more"\n', "Line 9: the last input has no output"),
    (GOOD.replace('output="spam"\n', ""), r"Line 3: this input has no output line \(line 5"),
    (GOOD.replace('input="see you"\n', ""), "Line 6: an output without an input"),
], ids=["unclosed-quote", "stray-quote", "last-demo-without-output", "input-without-output", "output-without-input"])
def test_malformed_demonstrations_are_refused_with_the_line(prompt: str, message: str) -> None:
    with pytest.raises(TaskSpecError, match=message):
        parse_task(prompt)


def test_quotes_inside_values_stay_accepted() -> None:
    spec = parse_task('Rewrite politely.\ninput=He said "hi" to me\noutput="He said \\"hello\\" to me"\n'
                      'input="a"\noutput=b\n')
    assert [(e.input, e.output) for e in spec.examples] == [('He said "hi" to me', 'He said "hello" to me'), ("a", "b")]
    assert parse_task(GOOD).task_type == "classification"


def test_read_prompt_refuses_a_folder_and_a_device(tmp_path: Path) -> None:
    with pytest.raises(TaskSpecError, match="is a directory, not a prompt file"):
        read_prompt(str(tmp_path))
    with pytest.raises(TaskSpecError, match="device or other special file"):
        read_prompt("/dev/zero")
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (4 * MAX_PROMPT_CHARS + 1))
    with pytest.raises(TaskSpecError, match="bytes; the limit is"):
        read_prompt(str(big))


# --- property: any text either parses or raises TaskSpecError (nothing else) ---------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FIELD_LINES = st.builds(lambda key, sep, value: f"{key}{sep}{value}", st.sampled_from(["input", "output", "Input",
                         "OUTPUT", " input"]), st.sampled_from(["=", ":", " = ", "=\""]), st.text(max_size=40))
_PROMPTS = st.one_of(st.text(max_size=500), st.lists(st.one_of(_FIELD_LINES, st.text(max_size=60)), max_size=20)
                     .map("\n".join))


@settings(max_examples=300, deadline=None)
@given(_PROMPTS)
def test_any_prompt_parses_or_raises_task_spec_error(text: str) -> None:
    try:
        spec = parse_task(text)
    except TaskSpecError as e:
        assert str(e).strip()
        return
    assert spec.instruction and spec.examples
    assert spec.task_type in ("classification", "generation", "extractive-qa")
    assert spec.task_type != "classification" or len(spec.labels) >= 2
