"""Prompt templates as files, rendered strictly: a missing variable is an error, not an empty string."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

_DIR = Path(__file__).parent
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(name: str, **variables: Any) -> str:
    """Render `prompts/<name>.md.j2` with the given variables.

    Raises:
        jinja2.UndefinedError: a variable the template uses was not given.
    """
    return _env.get_template(f"{name}.md.j2").render(**variables)


def names() -> list[str]:
    """Every template's name."""
    return sorted(p.name.removesuffix(".md.j2") for p in _DIR.glob("*.md.j2"))


def variables(name: str) -> set[str]:
    """The variables a template declares (uses)."""
    source = (_DIR / f"{name}.md.j2").read_text(encoding="utf-8")
    return set(meta.find_undeclared_variables(_env.parse(source)))
