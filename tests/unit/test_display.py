"""Untrusted text (LLM answers, dataset rows, names) reaches the terminal escaped and without control sequences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from agent.cli import cli
from agent.display import json_line, plain, safe
from tests.openai_stub import build_through_stub
from tests.openai_stub import SmsTeacher

# What an LLM or a dataset may send: Rich closing tags, a chat template's tag, clear screen, a window title
# (OSC), a cursor move, a C1 CSI, a carriage return that would overwrite the line, a bidi override.
PAYLOAD = "[/bold] [/INST] [red]x[/red] \x1b[2J\x1b]0;pwned\x07 \x1b[1A\x9b31m \rforged \u202eevil"
# (Library progress bars may print their own \r; what must not reach the terminal is the payload's.)
ESCAPES = ("\x1b[2J", "\x1b]0;", "\x1b[1A", "\x07", "\x9b", "\rforged", "\u202e")


def _clean(text: str) -> None:
    for c in ESCAPES:
        assert c not in text, repr(c)


def test_safe_escapes_markup_and_strips_control_sequences() -> None:
    from rich.console import Console

    assert plain(PAYLOAD) == "[/bold] [/INST] [red]x[/red]   forged evil"
    console = Console(record=True, width=200)
    console.print(f"[dim]{safe(PAYLOAD)}[/]")  # raised MarkupError before
    text = console.export_text()
    assert "[/bold] [/INST] [red]x[/red]" in text
    _clean(text)
    assert plain("line\n\ttab") == "line\n\ttab"  # layout characters stay
    line = json_line({"t": PAYLOAD})
    _clean(line)
    assert json.loads(line) == {"t": PAYLOAD}  # JSON output keeps the data, escaped


def _trace(run: Path, events: list[dict[str, Any]]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "trace.jsonl").write_text("".join(json.dumps({"run_id": run.name, **e}) + "\n" for e in events))


def test_trace_of_markup_and_escapes_prints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _trace(run, [
        {"kind": "decision", "step": 1, "name": "search_datasets", "decided_by": "llm", "reason": PAYLOAD,
         "allowed": ["search_datasets", PAYLOAD]},
        {"kind": "tool", "name": "search_datasets", "ok": False, "error": PAYLOAD,
         "candidates": [{"name": PAYLOAD, "score": 1, "reason": PAYLOAD}]},
        {"kind": "human", "turns": [{"question": PAYLOAD, "answer": PAYLOAD, "change": PAYLOAD}]},
        {"kind": "iteration", "iteration": 1, "weak_labels": [PAYLOAD], "metric": PAYLOAD},
        {"kind": "finish", "reason": PAYLOAD, "score": None},
        {"name": "an event without a kind"},
    ])
    result = CliRunner().invoke(cli, ["trace", str(run)])
    assert result.exit_code == 0, result.output
    assert "[/INST]" in result.output and "forged" in result.output
    _clean(result.output)
    result = CliRunner().invoke(cli, ["trace", str(run), "--json"])
    assert result.exit_code == 0
    _clean(result.output)
    assert json.loads(result.output.splitlines()[0])["reason"] == PAYLOAD


class MarkupTeacher(SmsTeacher):
    """A teacher whose planning reasons carry markup and escape sequences."""

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        kind, answer = super().__call__(body)
        if body["tool_choice"]["function"]["name"] == "choose_action":
            answer = {**answer, "reason": PAYLOAD}
        return kind, answer


def test_build_with_markup_in_the_planner_reason(tmp_path: Path, tiny_encoder: Path) -> None:
    result, _ = build_through_stub(MarkupTeacher(), "sk-display-test", tmp_path, tiny_encoder, retrieved=20)
    assert result.exit_code in (0, 2), result.output  # MarkupError ended the build before
    _clean(result.output)
    summary = json.loads(result.stdout)
    run = Path(summary["run"])
    reasons = [json.loads(x).get("reason") for x in (run / "trace.jsonl").read_text().splitlines()]
    assert PAYLOAD in reasons  # the trace keeps what the LLM said; only the display is cleaned
    shown = CliRunner().invoke(cli, ["trace", str(run)])
    assert shown.exit_code == 0 and "[/INST]" in shown.output
    _clean(shown.output)


def test_chat_with_markup_and_escapes_in_the_labels(tmp_path: Path) -> None:
    """Labels from the prompt are shown back in the question and plan panels: escaped, without escapes."""
    from tests.openai_stub import OpenAIStub

    prompt = ('Sort these SMS messages.\n\ninput="WIN cash now"\noutput="[/bold]"\n\ninput="see you at 5"\n'
              'output="\\u001b[2Jham\\u0007"\n\ninput="Free prize"\noutput="[/bold]"\n\ninput="lunch?"\n'
              'output="\\u001b[2Jham\\u0007"\n')
    with OpenAIStub(responder=SmsTeacher(), model="gpt-test") as stub:
        result = CliRunner().invoke(cli, ["chat", prompt, "--out", str(tmp_path), "--llm", "openai", "--base-url",
                                          stub.base_url, "--model", "gpt-test"], input="no\ncancel\n",
                                    env={"OPENAI_API_KEY": "sk-display-test"})
    assert result.exit_code == 3, result.output  # declined at the plan, after both panels were shown
    assert "I found the labels [/bold], ham in" in result.output and "labels [/bold], ham." in result.output
    _clean(result.output)
