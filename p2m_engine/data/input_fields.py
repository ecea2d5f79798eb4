"""Inputs made of marked fields, such as "Question: ... Context: ...": found in the demos, written field by field.

A small teacher asked for whole inputs of this kind often drops a marker or runs the fields together. Asked for
each field as its own JSON string (the long one first: a passage, then a question about it), it keeps them
apart, and p2m puts the markers back in the demos' order and spacing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A field marker ("Question:", "[Posted:", "Sentence 1:") opens the text, a line, a bracket or a sentence; "Pro Bowl:"
# mid-sentence is prose.
MARKER = re.compile(r"(?:^|(?<=[\n\[(])|(?<=[.?!]\s))([^\W\d_]\w*(?: \d{1,2})?:)", re.UNICODE)
_NAME = re.compile(r"[^\w]+", re.UNICODE)


def format_markers(texts: list[str]) -> frozenset[str]:
    """The `Word:` field markers (e.g. `Question:`, `Context:`) that every one of `texts` contains."""
    found = [set(MARKER.findall(t)) for t in texts]
    return frozenset(set.intersection(*found)) if found else frozenset()


@dataclass(frozen=True)
class FieldTemplate:
    """The shape every demo input shares: `literals[0] marker_1 field_1 literals[1] ... marker_n field_n literals[n]`
    where each literal holds the text between fields (markers and their spacing included)."""

    names: tuple[str, ...]
    """A JSON-safe name per field, in input order (`question`, `context`)."""
    literals: tuple[str, ...]
    """The fixed text before, between and after the fields (one more than the fields)."""
    order: tuple[int, ...]
    """Field indices in the order the teacher writes them: longest in the demos first."""
    pattern: str
    """A regex with one group per field that every demo input matches."""

    def assemble(self, values: dict[str, str]) -> str:
        """The input with `values` (by field name) in place, in the demos' order and spacing."""
        parts = [self.literals[0]]
        for i, name in enumerate(self.names):
            parts += [values[name].strip(), self.literals[i + 1]]
        return "".join(parts)

    def split(self, text: str) -> dict[str, str] | None:
        """The fields of an input of this shape, or None when it does not have it."""
        m = re.fullmatch(self.pattern, text, re.DOTALL)
        return dict(zip(self.names, m.groups())) if m else None


def field_template(demos: list[str]) -> FieldTemplate | None:
    """The field template every demo input fits, when they have at least two markers in the same order.

    Returns None for inputs without such a shape (plain sentences, code): they are written whole.
    """
    markers = format_markers(demos)
    if len(markers) < 2 or not demos:
        return None
    first = demos[0]
    ordered = sorted(markers, key=first.find)
    pattern = "".join(f"(?:{re.escape(m)})\\s*(.+?)\\s*" if i < len(ordered) - 1 else f"(?:{re.escape(m)})\\s*(.+)"
                      for i, m in enumerate(ordered))
    pattern = f"(.*?){pattern}"  # a shared prefix before the first marker ("[Posted: ...] ") stays literal
    matches = [re.fullmatch(pattern, d, re.DOTALL) for d in demos]
    if not all(matches) or len({m.group(1) for m in matches if m}) != 1:
        return None
    m0 = matches[0]
    assert m0 is not None
    # The literals are what lies between the field groups in the first demo (markers and spacing).
    cuts = [m0.span(g) for g in range(2, len(ordered) + 2)]
    literals = [first[: cuts[0][0]]]
    literals += [first[cuts[i][1] : cuts[i + 1][0]] for i in range(len(cuts) - 1)]
    literals.append(first[cuts[-1][1] :])
    names = tuple(_NAME.sub("_", m.rstrip(":")).strip("_").lower() or f"field_{i + 1}" for i, m in enumerate(ordered))
    if len(set(names)) != len(names):
        return None
    lengths = [sum(len(m.group(g + 2)) for m in matches if m) for g in range(len(ordered))]
    order = tuple(sorted(range(len(ordered)), key=lambda i: -lengths[i]))
    exact = "".join(f"{re.escape(lit)}(.+?)" for lit in literals[:-1]) + re.escape(literals[-1])
    return FieldTemplate(names, tuple(literals), order, exact)
