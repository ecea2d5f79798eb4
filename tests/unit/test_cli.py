"""CLI behaviour on bad input: one clear line, a non-zero exit, nothing already written lost."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli

PROMPT = 'Is this SMS spam or ham?\n\ninput="win cash"\noutput="spam"\n\ninput="see you"\noutput="ham"\n'


def _invoke(args: list[str], **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "   "], "prompt is empty"),
        (["build", "Classify these messages please"], "no demonstrations"),
        (["build", "missing-prompt.txt"], "No prompt file"),
        (["build", PROMPT, "--llm", "bard"], "Unknown --llm backend"),
        (["build", PROMPT, "--budget", "steps=x"], "Invalid --budget"),
        (["build", PROMPT, "--hub", "/no/such/hub"], "no such folder"),
        (["build", 'Is it good or bad?\ninput="x"\noutput="good"\ninput="x"\noutput="bad"\n'], "Contradictory"),
        (["build", PROMPT, "--budget", "target=1.5"], "between 0 and 1"),
    ],
)
def test_bad_input_gives_one_clear_line(args: list[str], message: str) -> None:
    code, out = _invoke(args)
    assert code != 0
    assert message in out
    assert "Traceback" not in out


def test_unreachable_openai_endpoint_fails_fast_and_keeps_the_run_folder(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = _invoke(["build", PROMPT, "--llm", "openai", "--base-url", f"http://127.0.0.1:{port}/v1",
                         "--out", str(tmp_path)], OPENAI_API_KEY="sk-test-sentinel-123456")
    assert code == 1 and "Cannot reach the LLM endpoint" in out
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "config.json").is_file() and (runs[0] / "task.json").is_file()
    # The key is never written anywhere in the run folder.
    for f in runs[0].rglob("*"):
        if f.is_file():
            assert "sk-test-sentinel-123456" not in f.read_text(errors="ignore")


def test_openai_backend_without_key_or_url_is_refused(tmp_path: Path) -> None:
    code, out = _invoke(["build", PROMPT, "--llm", "openai", "--out", str(tmp_path)])
    assert code == 1 and "OPENAI_API_KEY" in out


def test_predict_and_trace_on_a_missing_run(tmp_path: Path) -> None:
    code, out = _invoke(["predict", str(tmp_path), "hello"])
    assert code == 1 and "No trained model" in out
    code, out = _invoke(["trace", str(tmp_path)])
    assert code == 1 and "No trace" in out


def test_help_lists_the_commands() -> None:
    code, out = _invoke(["--help"])
    assert code == 0 and all(c in out for c in ("build", "predict", "trace"))


def test_iteration_line_names_the_metric_it_decided_on() -> None:
    from agent.ui import iteration_line

    line = iteration_line({"decision_split": "dev", "decision_score": 0.2969, "metric": "chrf++", "score_split": "test",
                           "score": 0.1341, "improved": True, "weak_labels": []})
    assert line.startswith("dev chrf++ 0.2969 (decides) · test chrf++ 0.1341 (reported) · new best")
    assert "accuracy" not in line
    old = iteration_line({"decision_split": "demos", "decision_score": 1.0, "score": 0.5, "improved": False,
                          "best_iteration": 1, "weak_labels": ["spam"]})
    assert "demos accuracy 1.0" in old and "best stays iteration 1" in old and "weak labels: spam" in old


@pytest.mark.parametrize("command", ["build", "chat"])
def test_build_and_chat_refuse_the_same_bad_settings_before_making_a_run_folder(command: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for bad, message in ((["--llm", "bard"], "Unknown --llm backend"), (["--hub", str(tmp_path / "nope")], "no such folder"),
                         (["--test", str(tmp_path / "nope.jsonl")], "no such file"),
                         (["--unlabelled", str(tmp_path / "nope.txt")], "no such file"),
                         (["--unlabelled", str(empty)], "no texts")):
        code, out = _invoke([command, PROMPT, "--out", str(tmp_path / "runs"), *bad])
        assert code == 1 and message in out, (bad, out)
        assert not (tmp_path / "runs").exists()


def test_chat_takes_every_build_option() -> None:
    build, chat = _invoke(["build", "--help"])[1], _invoke(["chat", "--help"])[1]
    for option in ("--llm", "--model", "--base-url", "--hub", "--catalog", "--test", "--unlabelled", "--out", "--budget",
                   "--base-model", "--seed"):
        assert option in build and option in chat
