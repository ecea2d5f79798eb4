"""--budget parsing: defaults, values, and one clear P2MError per bad item."""

from __future__ import annotations

import pytest

from agent.budget import Budget
from p2m_engine.errors import P2MError


def test_defaults() -> None:
    b = Budget()
    assert (b.steps, b.per_label, b.epochs, b.retrieved) == (12, 40, 3.0, 1000)
    assert Budget.parse(None) == b
    assert Budget.parse("") == b
    assert Budget.parse(" , ,") == b


def test_parse_values() -> None:
    b = Budget.parse("steps=8,per_label=20,epochs=1")
    assert b == Budget(steps=8, per_label=20, epochs=1.0, retrieved=1000)
    assert isinstance(b.steps, int) and isinstance(b.per_label, int)
    assert isinstance(b.epochs, float)


def test_parse_whitespace_dashes_and_fractions() -> None:
    b = Budget.parse(" steps = 5 , per-label=7, epochs=0.5 ,retrieved=0")
    assert b == Budget(steps=5, per_label=7, epochs=0.5, retrieved=0)
    assert isinstance(b.retrieved, int)


def test_later_value_wins() -> None:
    assert Budget.parse("steps=3,steps=4").steps == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo=1", "Invalid --budget item 'foo=1'"),
        ("steps", "Invalid --budget item 'steps'"),
        ("=5", "Invalid --budget item"),
        ("steps=x", "'x' is not a number"),
        ("epochs=", "is not a number"),
        ("per_label=-1", "must be positive"),
        ("epochs=-0.5", "must be positive"),
        ("steps=0", "steps must be at least 1"),
        ("epochs=0", "epochs must be more than 0"),
        ("per_label=1e9", "per_label must be at least 0 and at most 10000"),
        ("labelled=100001", "labelled must be at least 0 and at most 100000"),
        ("labelled=2.5", "labelled is a whole number"),
        ("steps=8,bogus=2", "bogus"),
    ],
)
def test_bad_input_raises(text: str, message: str) -> None:
    with pytest.raises(P2MError) as info:
        Budget.parse(text)
    assert message in str(info.value)
    assert "--budget" in str(info.value)


def test_unknown_key_message_lists_valid_keys() -> None:
    with pytest.raises(P2MError) as info:
        Budget.parse("step=3")
    for key in ("steps", "per_label", "epochs", "retrieved"):
        assert key in str(info.value)


@pytest.mark.parametrize("text", ["steps=nan", "steps=inf", "epochs=nan"])
def test_non_finite_values_raise_p2m_error(text: str) -> None:
    with pytest.raises(P2MError, match="Invalid --budget"):
        Budget.parse(text)


def test_target_and_iterations() -> None:
    b = Budget.parse("target=0.95,iterations=4,llm_calls=200")
    assert b.target == 0.95 and isinstance(b.target, float) and b.target_for("accuracy") == 0.95
    assert b.iterations == 4 and isinstance(b.iterations, int) and b.llm_calls == 200
    # No target given: the metric's default.
    assert Budget().target is None and Budget().target_for("accuracy") == 0.9 and Budget().iterations == 3
    assert Budget().llm_calls is None


@pytest.mark.parametrize("text", ["target=0", "target=1.5", "iterations=0"])
def test_bad_target_or_iterations(text: str) -> None:
    with pytest.raises(P2MError, match="Invalid --budget value"):
        Budget.parse(text)


def test_labelled_is_bounded_and_zero_turns_it_off() -> None:
    assert Budget().labelled == 200
    assert Budget.parse("labelled=0").labelled == 0 and Budget.parse("labelled=100000").labelled == 100_000
    assert isinstance(Budget.parse("labelled=50").labelled, int)
