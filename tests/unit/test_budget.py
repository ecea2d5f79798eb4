"""--budget parsing: defaults, values, and one clear P2MError per bad item."""

from __future__ import annotations

import pytest

from agent.budget import Budget, Limits, Targets
from p2m_engine.errors import P2MError


def test_defaults() -> None:
    b = Budget()
    assert (b.limits.steps, b.targets.per_label, b.targets.epochs, b.targets.retrieved) == (12, 40, 3.0, 1000)
    assert Budget.parse(None) == b
    assert Budget.parse("") == b
    assert Budget.parse(" , ,") == b


def test_parse_values() -> None:
    b = Budget.parse("steps=8,per_label=20,epochs=1")
    assert b == Budget(Limits(steps=8), Targets(per_label=20, epochs=1.0, retrieved=1000))
    assert isinstance(b.limits.steps, int) and isinstance(b.targets.per_label, int)
    assert isinstance(b.targets.epochs, float)


def test_parse_whitespace_dashes_and_fractions() -> None:
    b = Budget.parse(" steps = 5 , per-label=7, epochs=0.5 ,retrieved=0")
    assert b == Budget(Limits(steps=5), Targets(per_label=7, epochs=0.5, retrieved=0))
    assert isinstance(b.targets.retrieved, int)


def test_later_value_wins() -> None:
    assert Budget.parse("steps=3,steps=4").limits.steps == 4


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
    t, lim = b.targets, b.limits
    assert t.target == 0.95 and isinstance(t.target, float) and t.target_for("accuracy") == 0.95
    assert lim.iterations == 4 and isinstance(lim.iterations, int) and lim.llm_calls == 200
    # No target given: the metric's default.
    assert Targets().target is None and Targets().target_for("accuracy") == 0.9 and Limits().iterations == 3
    assert Limits().llm_calls is None


@pytest.mark.parametrize("text", ["target=0", "target=1.5", "iterations=0"])
def test_bad_target_or_iterations(text: str) -> None:
    with pytest.raises(P2MError, match="Invalid --budget value"):
        Budget.parse(text)


def test_labelled_is_bounded_and_zero_turns_it_off() -> None:
    assert Targets().labelled == 200
    assert Budget.parse("labelled=0").targets.labelled == 0
    assert Budget.parse("labelled=100000").targets.labelled == 100_000
    assert isinstance(Budget.parse("labelled=50").targets.labelled, int)
    assert Targets().written == 60 and Budget.parse("written=0").targets.written == 0
    with pytest.raises(P2MError, match="written must be"):
        Budget.parse("written=10001")


def test_limits_are_what_a_build_spends_and_targets_what_it_makes() -> None:
    b = Budget.parse("steps=5,usd=2,llm_calls=9,iterations=2,teacher_check=7,per_label=3,epochs=2,target=0.8")
    assert b.limits == Limits(steps=5, iterations=2, llm_calls=9, usd=2.0, teacher_check=7)
    assert b.targets == Targets(per_label=3, epochs=2.0, target=0.8)
    # config.json keeps the flat record of --budget; it reads back the same, and a key this version does not know
    # (from an older or newer p2m) is ignored.
    flat = b.to_dict()
    assert flat["steps"] == 5 and flat["per_label"] == 3 and "limits" not in flat
    assert Budget.from_dict(flat) == b and Budget.from_dict({**flat, "retired_key": 1}) == b
    assert Budget.from_dict(None) == Budget()
    # A change lands in its half and leaves the other alone.
    changed = b.replace(labelled=0, steps=6)
    assert changed.targets.labelled == 0 and changed.limits.steps == 6 and changed.targets.per_label == 3
