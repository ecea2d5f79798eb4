"""Bad input through the CLI: one clear line, a non-zero exit, no traceback, and nothing already in the output
folder lost or changed (the cases test_cli.py does not cover)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from p2m_engine.data.datasets import load_examples
from p2m_engine.errors import DatasetError

PROMPT = 'Is this SMS spam or ham?\n\ninput="win cash"\noutput="spam"\n\ninput="see you"\noutput="ham"\n'
ONE_LABEL = 'Is this SMS spam?\n\ninput="win cash"\noutput="spam"\n\ninput="free money now"\noutput="spam"\n'


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output folder that already holds a run; no bad input may touch it."""
    run = tmp_path / "runs" / "20260101-000000-earlier-run"
    (run / "data").mkdir(parents=True)
    (run / "summary.json").write_text('{"run": "earlier"}')
    (run / "data" / "generated.jsonl").write_text('{"input": "a", "output": "spam"}\n')
    return tmp_path / "runs"


def bad(args: list[str], out: Path, message: str) -> None:
    before = snapshot(out)
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "prompt is empty"),
        (" \n\t\n ", "prompt is empty"),
        ("Classify these messages as spam or ham.", "no demonstrations"),
        ('Spam or ham?\ninput="win cash"\noutput="spam"\ninput="win cash"\noutput="ham"\n', "Contradictory"),
        (ONE_LABEL, "one label only ('spam')"),
        (PROMPT + "#" * 200_000, "the limit is"),
    ],
    ids=["empty", "whitespace", "no-demos", "contradictory", "one-label", "200KB"],
)
def test_bad_prompt(prompt: str, message: str, out: Path, tmp_path: Path) -> None:
    bad(["build", prompt], out, message)
    # The same prompt from a file.
    f = tmp_path / "prompt.txt"
    f.write_text(prompt)
    bad(["build", str(f)], out, message)


def test_one_label_named_in_instruction_only_is_refused_too(out: Path) -> None:
    bad(["build", 'Classify as spam.\ninput="win cash"\noutput="spam"\n'], out, "one label only")


def test_non_utf8_prompt_file(out: Path, tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes(PROMPT.replace("Is this", "Est-ce caf\u00e9").encode("latin-1"))
    bad(["build", str(f)], out, "is not UTF-8 text")


@pytest.mark.parametrize("flag", ["--base-model", "--student"])  # --student: the former name, still taken
def test_unknown_base_model_folder(flag: str, out: Path) -> None:
    bad(["build", PROMPT, flag, "/no/such/dir"], out, "--base-model /no/such/dir: no such model folder")


def test_missing_gguf_model(out: Path, tmp_path: Path) -> None:
    bad(["build", PROMPT, "--model", str(tmp_path / "x.gguf")], out, "no such .gguf file")


def test_unknown_packaged_model_name(out: Path) -> None:
    # Before, a name that is no .gguf file silently ran the default 0.5B model.
    bad(["build", PROMPT, "--model", "qwen9-huge"], out, "--model qwen9-huge: not a .gguf file, nor a packaged model")


@pytest.mark.parametrize("budget", ["bogus=1", "epochs", "steps=-1", "target=2", "per_label=nan"])
def test_invalid_budget(budget: str, out: Path) -> None:
    bad(["build", PROMPT, "--budget", budget], out, "--budget")


def test_output_folder_that_cannot_be_created(tmp_path: Path) -> None:
    # A path under a regular file fails for root too (a chmod 0o500 folder does not stop root).
    blocker = tmp_path / "some_file"
    blocker.write_text("keep me")
    result = CliRunner().invoke(cli, ["build", PROMPT, "--out", str(blocker / "runs")])
    assert result.exit_code == 1 and "Cannot write the run folder" in result.stderr and "Choose another --out" in result.stderr
    assert "Traceback" not in result.output and blocker.read_text() == "keep me"


def test_hub_dataset_with_broken_lines_and_missing_columns(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"input": "a", "output": "spam"}\n{broken\n{"text": "no input or output"}\n'
                    '{"input": "b", "output": "ham"}\n\n')
    skipped: list[str] = []
    rows = load_examples(data, skipped=skipped)
    assert [(r.input, r.output) for r in rows] == [("a", "spam"), ("b", "ham")]
    assert len(skipped) == 2  # counted: each skipped line reported once, with its file and line
    assert skipped[0].startswith(f"{data}:2:") and skipped[1].startswith(f"{data}:3:")
    no_columns = tmp_path / "other.jsonl"
    no_columns.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    with pytest.raises(DatasetError, match="no usable rows") as e:
        load_examples(no_columns)
    assert str(no_columns) in str(e.value)


# --- issue 14 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("home", ["a_file", "a_file/below"], ids=["file", "under-a-file"])
def test_invalid_p2m_home_is_one_line_and_makes_no_run_folder(home: str, out: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("P2M_HOME", str(tmp_path / home))
    bad(["build", PROMPT, "--yes"], out, "P2M_HOME")


def test_missing_api_key_makes_no_run_folder(out: Path) -> None:
    bad(["build", PROMPT, "--llm", "openai", "--yes"], out, "OPENAI_API_KEY")


@pytest.mark.parametrize(("budget", "message"), [
    ("epochs=0", "epochs must be more than 0"),
    ("per_label=1e9", "per_label must be at least 0 and at most 10000"),
    ("steps=1000", "steps must be"),
    ("iterations=0", "iterations must be"),
    ("retrieved=1e12", "retrieved must be"),
    ("llm_calls=1e12", "llm_calls must be"),
    ("usd=1e9", "usd must be"),
    ("steps=2.5", "whole number"),
])
def test_budget_values_are_bounded(budget: str, message: str, out: Path) -> None:
    bad(["build", PROMPT, "--budget", budget, "--yes"], out, message)


def test_estimate_above_the_ceiling_is_refused_under_yes_and_asked_otherwise(out: Path) -> None:
    # 2 labels x 9,000 examples: about 11,000 LLM calls.
    bad(["build", PROMPT, "--budget", "per_label=9000", "--yes"], out, "Not started")
    before = snapshot(out)
    result = CliRunner().invoke(cli, ["build", PROMPT, "--budget", "per_label=9000", "--out", str(out)], input="n\n")
    assert result.exit_code == 1 and "Build anyway?" in result.output and "Not started" in result.stderr
    assert snapshot(out) == before


@pytest.mark.parametrize("path", ["folder", "/dev/zero"])
def test_prompt_that_is_a_folder_or_a_device_is_not_read_as_text(path: str, out: Path, tmp_path: Path) -> None:
    target = str(tmp_path) if path == "folder" else path
    bad(["build", target, "--yes"], out, "not a prompt file")


def test_unreachable_endpoint_names_the_run_folder_and_the_resume_command(tmp_path: Path) -> None:
    import json

    result = CliRunner().invoke(cli, ["build", PROMPT, "--llm", "openai", "--base-url", "http://127.0.0.1:9/v1",
                                      "--out", str(tmp_path), "--yes"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [run] = list(tmp_path.iterdir())
    [line] = result.stderr.strip().splitlines()
    assert "Cannot reach the LLM endpoint" in line and str(run) in line and f"p2m resume {run}" in line
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "error" and "Cannot reach" in events[-1]["error"]


@pytest.mark.parametrize(("args", "message"), [(["--concurrency", "0"], "--concurrency must be at least 1"),
                                               (["--off", "retrieval"], "--off: unknown part")])
def test_bad_concurrency_or_unknown_part_to_switch_off(args: list[str], message: str, out: Path) -> None:
    bad(["build", PROMPT, *args], out, message)
