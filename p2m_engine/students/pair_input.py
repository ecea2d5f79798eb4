"""Inputs made of two marked texts ("Sentence 1: ... Sentence 2: ...", "Premise: ... Hypothesis: ..."), encoded for
the classification student as a sentence pair: `[CLS] a [SEP] b [SEP]` with segment ids, the form encoders are
pre-trained on for paraphrase and entailment, instead of one string with the markers inside.

The field template (p2m_engine.data.input_fields) is found on the training inputs and saved in the model folder
(`p2m_pair.json`), so that prediction, serving and the ONNX export split an input the same way.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from p2m_engine.data.input_fields import FieldTemplate, field_template

PAIR_FILE = "p2m_pair.json"
# Inputs the template is found on; then this share of all training inputs must fit it.
SAMPLE = 50
MIN_FIT = 0.95


def pair_template(inputs: list[str]) -> FieldTemplate | None:
    """The two-field template nearly all `inputs` share, or None (plain texts, one field, three or more)."""
    template = field_template(inputs[:SAMPLE]) if inputs else None
    if template is None or len(template.names) != 2:
        return None
    fits = sum(template.split(x) is not None for x in inputs)
    return template if fits >= MIN_FIT * len(inputs) else None


def split_pairs(template: FieldTemplate, texts: list[str]) -> tuple[list[str], list[str]]:
    """The first and second field of each text; a text that does not fit stays whole, with an empty second."""
    first, second = [], []
    for text in texts:
        fields = template.split(text)
        first.append(fields[template.names[0]].strip() if fields else text)
        second.append(fields[template.names[1]].strip() if fields else "")
    return first, second


def tokenize(tok: Any, texts: list[str], template: FieldTemplate | None, **kwargs: Any) -> Any:
    """`tok(texts, **kwargs)`, or `tok(first, second, **kwargs)` when the inputs have a pair template."""
    if template is None:
        return tok(texts, **kwargs)
    first, second = split_pairs(template, texts)
    return tok(first, second, **kwargs)


def save(template: FieldTemplate | None, folder: Path) -> None:
    """Write the template into a model folder (nothing for single-text inputs)."""
    if template is not None:
        (folder / PAIR_FILE).write_text(json.dumps(dataclasses.asdict(template), ensure_ascii=False), encoding="utf-8")


def load(folder: Path) -> FieldTemplate | None:
    """The template saved in a model folder, or None."""
    path = folder / PAIR_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return FieldTemplate(tuple(data["names"]), tuple(data["literals"]), tuple(data["order"]), data["pattern"])
