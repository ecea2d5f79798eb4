"""The terminal display of a build: progress bars and chat messages in the order things happened."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from p2m_engine.runs import Run


def test_bars_stay_above_the_chat_and_are_not_drawn_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.ui as ui

    out = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=out, width=100, force_terminal=False))
    monkeypatch.setattr(ui.console, "input", lambda prompt="": "why?")
    display = ui.BuildDisplay(Run.create(tmp_path, "t"))
    with display:
        display.progress("generate_examples", 3, 6)
        display.progress("generate_examples", 6, 6)
        display.show("Build finished: [bold]done[/bold]")  # untrusted text stays text
        assert display.read() == "why?"
        display.show("The answer")
        display.progress("train_model", 1, 2)
    text = out.getvalue()
    assert text.count("generate_examples") == 1 and text.count("train_model") == 1
    assert text.index("generate_examples") < text.index("Build finished") < text.index("The answer") < \
        text.index("train_model")
    assert "[bold]done[/bold]" in text
