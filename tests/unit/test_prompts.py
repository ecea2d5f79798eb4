"""Prompt templates render completely with their variables and fail loudly without one."""

from __future__ import annotations

import re
from typing import Any

import jinja2
import pytest

import prompts
from p2m_engine.types import Example

NAMES = prompts.names()


# Variables that are lists of records (the template reads their fields).
_RECORDS: dict[str, list[dict[str, Any]]] = {
    "candidates": [{"name": f"cand_{x}", "description": f"cand {x} description", "labels": [f"cand_{x}_label"],
                    "rows": [{"input": f"cand {x} row input", "output": f"cand {x} row output"}]} for x in "ab"],
    "observations": [{"name": f"obs_{x}", "content": f"obs {x} content"} for x in "ab"],
    "dataset_labels": [{"label": f"dlabel_{x}", "rows": [f"dlabel {x} row one", f"dlabel {x} row two"]} for x in "ab"],
}


def _strings(value: Any) -> list[str]:
    """Every string inside a (nested) record."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _sample(var: str) -> Any:
    if var in _RECORDS:
        return _RECORDS[var]
    if var == "n":
        return 7
    if var == "descriptions":  # label -> what it means (the sample labels are "labels_item_a", ...)
        return {"labels_item_a": "descriptions meaning of a"}
    if var in ("actions", "facts"):
        return {f"{var}_key_one": f"{var} value one", f"{var}_key_two": f"{var} value two"}
    if var == "examples":
        return [Example("sample input alpha", "lab_a"), Example("sample input beta", "lab_b")]
    if var in ("labels", "allowed") or var.endswith("s"):
        return [f"{var}_item_a", f"{var}_item_b"]
    return f"sample {var} text"


def _samples(name: str) -> dict[str, Any]:
    return {v: _sample(v) for v in prompts.variables(name)}


def test_there_are_templates() -> None:
    assert NAMES, "no prompts/*.md.j2 templates found"


@pytest.mark.parametrize("name", NAMES)
def test_template_declares_variables(name: str) -> None:
    assert prompts.variables(name), f"{name} declares no variables"


@pytest.mark.parametrize("name", NAMES)
def test_render_fills_every_placeholder(name: str) -> None:
    values = _samples(name)
    out = prompts.render(name, **values)
    assert out.strip()
    assert "{{" not in out and "}}" not in out
    assert "{%" not in out and "%}" not in out
    for var in values:
        assert not re.search(r"\{\s*" + re.escape(var) + r"\s*\}", out), f"{{{var}}} left in {name}"
    # No format-style placeholder of any name either (e.g. "{instruction}" left from str.format days).
    assert not re.search(r"\{\s*[A-Za-z_]\w*\s*\}", out), f"single-brace placeholder left in {name}"
    # The values actually show up in the output.
    for var, value in values.items():
        if isinstance(value, str):
            assert value in out, f"{var} not rendered in {name}"
        elif isinstance(value, int):
            assert str(value) in out
        elif isinstance(value, dict):
            for k, v in value.items():
                assert k in out and v in out
        elif var == "examples":
            for e in value:
                assert e.input in out
        elif var in _RECORDS:
            for text in _strings(value):
                assert text in out, f"{var} field {text!r} not rendered in {name}"
        else:
            for item in value:
                assert item in out


_PAIRS = [(n, v) for n in NAMES for v in sorted(prompts.variables(n))]


@pytest.mark.parametrize(("name", "missing"), _PAIRS, ids=[f"{n}-{v}" for n, v in _PAIRS])
def test_render_with_missing_variable_raises(name: str, missing: str) -> None:
    values = _samples(name)
    del values[missing]
    with pytest.raises(jinja2.UndefinedError):
        prompts.render(name, **values)


def test_unknown_template_raises() -> None:
    with pytest.raises(jinja2.TemplateNotFound):
        prompts.render("no_such_template_xyz")


def test_targeted_template_tells_the_teacher_what_the_student_confuses() -> None:
    assert "generate_targeted_examples" in NAMES
    assert prompts.variables("generate_targeted_examples") == {
        "instruction", "labels", "label", "examples", "n", "confused_labels", "missed_inputs", "wrong_inputs", "descriptions",
        "guidance"}
    out = prompts.render("generate_targeted_examples", instruction="Route the ticket.", labels=["tech", "billing"],
                         label="tech", examples=[Example("wifi drops", "tech")], n=3,
                         confused_labels=["billing", "sales"], missed_inputs=["app crashes"],
                         wrong_inputs=["refund please"], descriptions={}, guidance="short questions about routers")
    assert out.rstrip().endswith("Guidance: short questions about routers")
    assert 'The student model confuses "tech" with "billing", "sales".' in out
    assert 'These inputs ARE "tech", but the student got them wrong:\n- app crashes' in out
    assert 'These inputs are NOT "tech", but the student called them "tech":\n- refund please' in out
    assert 'Write 3 new inputs whose correct label is "tech"' in out
    # Without errors to show, those sections disappear instead of rendering empty.
    bare = prompts.render("generate_targeted_examples", instruction="Route the ticket.", labels=["tech", "billing"],
                          label="tech", examples=[], n=3, confused_labels=[], missed_inputs=[], wrong_inputs=[],
                          descriptions={}, guidance="")
    assert "confuses" not in bare and "Guidance" not in bare and "ARE" not in bare and "NOT" not in bare


LABEL_PROMPTS = ["generate_examples", "generate_targeted_examples", "classify", "map_labels", "rerank_datasets",
                 "edit_task"]


@pytest.mark.parametrize("name", LABEL_PROMPTS)
def test_label_descriptions_reach_every_prompt_that_uses_the_labels(name: str) -> None:
    assert "descriptions" in prompts.variables(name)
    values = {**_samples(name), "labels": ["card", "fraud"], "label": "fraud"}
    described = prompts.render(name, **{**values, "descriptions": {"fraud": "messages about suspicious charges"}})
    assert "- fraud: messages about suspicious charges" in described
    # Without descriptions the section is gone, not rendered empty.
    bare = prompts.render(name, **{**values, "descriptions": {}})
    assert "mean:" not in bare and "suspicious" not in bare


def test_generation_asks_for_the_described_meaning_of_the_label() -> None:
    out = prompts.render("generate_examples", instruction="Route bank messages.", labels=["card", "fraud"],
                         label="fraud", examples=[], n=4, descriptions={"fraud": "messages about suspicious charges"},
                         topic=None, guidance="")
    assert 'Write 4 new inputs whose correct label is "fraud" (messages about suspicious charges).' in out
