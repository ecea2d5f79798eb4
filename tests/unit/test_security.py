"""Security checks: the API key never reaches a run folder or an error message, names from outside never
become paths that leave their folder, and no model is ever loaded with trust_remote_code."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.cli import P2MGroup, cli
from p2m_engine.errors import P2MError, UnsafeNameError
from p2m_engine.names import hub_id_folder, name_problem, safe_name
from p2m_engine.runs import Run
from tests.conftest import DEMO_HUB, ROOT
from tests.faulty_server import FaultyServer, Teacher
from tests.openai_stub import build_through_stub

KEY = "sk-sentinel-SECURITY-7d41c0ffee9a"
PACKAGES = [ROOT / "p2m_engine", ROOT / "tools", ROOT / "agent", ROOT / "prompts"]


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py"))


def encodings(secret: str) -> list[bytes]:
    """The forms a key could take on disk: as is, UTF-16, base64 and hex."""
    raw = secret.encode()
    return [raw, secret.encode("utf-16-le"), base64.b64encode(raw), raw.hex().encode(), secret[4:].encode()]


def files_holding(folder: Path, secret: str) -> list[str]:
    found = []
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            data = f.read_bytes()
            if any(form in data for form in encodings(secret)):
                found.append(str(f.relative_to(folder)))
    return found


# ---------------------------------------------------------------------------------------- the API key


def test_api_key_never_reaches_the_run_folder(tmp_path: Path, tiny_encoder: Path, p2m_home: Path) -> None:
    result, requests = build_through_stub(Teacher(), KEY, tmp_path, tiny_encoder, retrieved=20, per_label=13)
    summary = json.loads(result.stdout)
    assert result.exit_code in (0, 2) and summary["model_dir"], result.output  # 2: built, under the target
    run = Path(summary["run"])
    # The key was really in use (the planner and the generator both sent it)...
    posts = [r for r in requests if r["method"] == "POST"]
    assert len(posts) >= 5 and all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in posts)
    # ...and every file the build left is there to be searched: trace, config, card, data, checkpoints.
    for name in ("trace.jsonl", "config.json", "task.json", "summary.json", "checkpoints.sqlite", "model/README.md",
                 "data/generated.jsonl", "data/train.jsonl", "metrics.json", "model/config.json"):
        assert (run / name).is_file(), name
    assert files_holding(run, KEY) == []
    assert files_holding(p2m_home, KEY) == []  # the response cache and the search index
    assert not any(form in (result.stdout + result.stderr).encode() for form in encodings(KEY))
    config = json.loads((run / "config.json").read_text())
    assert config["llm"]["backend"] == "openai" and "api_key" not in json.dumps(config)


@pytest.mark.parametrize("status", [400, 401, 500])
def test_api_key_echoed_by_a_server_is_masked_in_the_cli_error(tmp_path: Path, tiny_encoder: Path,
                                                                status: int) -> None:
    # A hostile or buggy server puts the Authorization header into its error message.
    with FaultyServer(schedule=lambda i: "echo_auth", retry_after_ms=1) as server:
        server.push(*[("fault", ("echo_auth", status))] * 10)
        result = CliRunner().invoke(
            cli,
            ["build", str(ROOT / "examples" / "sms_spam.txt"), "--llm", "openai", "--base-url", server.base_url,
             "--model", "gpt-test", "--base-model", str(tiny_encoder), "--out", str(tmp_path), "--planner", "rules",
             "--budget", "per_label=3,epochs=1"],
            env={"OPENAI_API_KEY": KEY, "P2M_LLM_MAX_RETRIES": "1", "P2M_LLM_MAX_BACKOFF": "0.01"},
        )
        assert server.injected["echo_auth"] >= 1
    assert result.exit_code == 1
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "LLM" in output
    assert KEY not in output and KEY[4:] not in output
    for run in tmp_path.iterdir():
        assert files_holding(run, KEY) == []


def _group_raising(exc: BaseException) -> click.Group:
    @click.group(cls=P2MGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise exc

    return group


@pytest.mark.parametrize("make", [
    lambda: P2MError(f"endpoint said: key {KEY} invalid"),
    lambda: RuntimeError(f"unexpected answer mentioning {KEY}"),
    lambda: ValueError("wrapped").with_traceback(None),
], ids=["p2m_error", "other_error", "cause"])
def test_cli_masks_the_key_in_any_error(make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    exc = make()
    if isinstance(exc, ValueError):  # the key only in the cause of the error that reaches the CLI
        try:
            raise RuntimeError(f"token {KEY}")
        except RuntimeError as inner:
            exc.__cause__ = inner
    for raise_errors in ("0", "1"):
        monkeypatch.setenv("P2M_RAISE_ERRORS", raise_errors)
        result = CliRunner().invoke(_group_raising(exc), ["boom"])
        assert result.exit_code == 1
        text = result.output + repr(result.exception)
        assert KEY not in text, text
        assert "[REDACTED]" in result.output or "wrapped" in result.output


def test_errors_without_a_secret_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    result = CliRunner().invoke(_group_raising(P2MError("plain problem")), ["boom"])
    assert result.exit_code == 1 and "Error: plain problem" in result.output
    result = CliRunner().invoke(_group_raising(KeyError("bug")), ["boom"])
    assert isinstance(result.exception, KeyError)  # a bug still surfaces as itself


def test_settings_and_client_reprs_hide_the_key() -> None:
    from agent.llms import LLMSettings
    from p2m_engine.llm import LLM

    settings = LLMSettings(backend="openai", api_key=KEY)
    assert KEY not in repr(settings) and KEY not in json.dumps(settings.describe())
    llm = LLM(base_url="http://127.0.0.1:9/v1", model="m", api_key=KEY)
    assert KEY not in repr(llm) and KEY not in json.dumps(llm.describe())


# ---------------------------------------------------------------------------------------- names that become paths


BAD_NAMES = ["", " ", ".", "..", "../x", "x/../../y", "/etc/passwd", "a/b", "a\\b", "..\\x", "x\x00y", "a\nb",
             "tab\tname", "C:evil", "ads:stream", " lead", "trail ", "x" * 256, "é" * 128, "zero\u200bwidth"]
GOOD_NAMES = ["sms_spam", "imdb-sentences.v2", "données", "a b", "x" * 255, "...x", "-dash"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_safe_name_refuses_names_that_could_leave_their_folder(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(UnsafeNameError, match="cannot be used as a file name"):
        safe_name(name, "dataset name")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_safe_name_keeps_ordinary_names_unchanged(name: str, tmp_path: Path) -> None:
    assert safe_name(name) == name
    target = (tmp_path / safe_name(name)).resolve()
    assert target.parent == tmp_path.resolve()


@pytest.mark.parametrize("value", [None, 3, b"bytes", Path("a")])
def test_safe_name_refuses_non_text(value: object) -> None:
    with pytest.raises(UnsafeNameError):
        safe_name(value)


@pytest.mark.parametrize("repo_id,folder", [("bert-base-uncased", "bert-base-uncased"),
                                            ("sentence-transformers/all-MiniLM-L6-v2",
                                             "sentence-transformers--all-MiniLM-L6-v2"),
                                            ("org/data.set_1", "org--data.set_1")])
def test_hub_id_folder(repo_id: str, folder: str) -> None:
    assert hub_id_folder(repo_id) == folder


@pytest.mark.parametrize("repo_id", ["", "a/b/c", "../x", "org/..", "/abs", "org/", "a--b/c", "org/x..y", ".hidden",
                                     "a b", "x\x00", "org\\name", "-org/x", None])
def test_hub_id_folder_refuses_bad_ids(repo_id: object) -> None:
    with pytest.raises(UnsafeNameError):
        hub_id_folder(repo_id)


@pytest.mark.parametrize("parts", [("../x",), ("data", "../../x"), ("/abs",), ("a//b",), ("data\\x",),
                                   ("x\x00y",), ("model/../..",), ("",)])
def test_run_paths_stay_inside_the_run(tmp_path: Path, parts: tuple[str, ...]) -> None:
    run = Run(tmp_path / "run")
    with pytest.raises(UnsafeNameError):
        run.path(*parts)
    with pytest.raises(UnsafeNameError):
        run.write_json("/".join(parts), {})
    assert not (tmp_path / "x").exists()


def test_run_paths_accept_nested_names(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    assert run.path("model", "p2m_train.json") == tmp_path / "run" / "model" / "p2m_train.json"
    assert run.write_json("model/p2m_train.json", {"a": 1}) == tmp_path / "run" / "model" / "p2m_train.json"
    assert run.read_json("model/p2m_train.json") == {"a": 1}


def _dataset(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"title": folder.name, "labels": ["a", "b"]}))
    (folder / "train.jsonl").write_text('{"input": "x", "output": "a"}\n')


def test_hub_folders_with_unsafe_names_are_skipped(tmp_path: Path) -> None:
    from p2m_engine.data.datasets import scan_hub

    for name in ("good", "line\nbreak", "colon:name", " spaced"):
        _dataset(tmp_path / "hub" / name)
    assert [d.name for d in scan_hub([tmp_path / "hub"])] == ["good"]


def test_suite_task_folders_with_unsafe_names_are_skipped(tmp_path: Path) -> None:
    from p2m_engine.eval.bench import read_suite

    for name in ("task_ok", "bad\ttask"):
        d = tmp_path / "suite" / name
        d.mkdir(parents=True)
        (d / "prompt.txt").write_text('Classify.\n\ninput="x"\noutput="a"\n')
        (d / "test.jsonl").write_text('{"input": "x", "output": "a"}\n')
    assert [t.name for t in read_suite(tmp_path / "suite")] == ["task_ok"]


def test_bench_hub_links_stay_inside_the_output_folder(tmp_path: Path) -> None:
    from agent.bench import hub_without
    from p2m_engine.eval.bench import BenchTask

    for name in ("one", "two", "own"):
        _dataset(tmp_path / "hub" / name)
    (tmp_path / "t.jsonl").write_text('{"input": "a test row of its own", "output": "y"}\n')
    task = BenchTask("own", tmp_path / "hub" / "own", tmp_path / "p.txt", tmp_path / "t.jsonl", None, {})
    [folder], hidden = hub_without(task, [tmp_path / "hub"], tmp_path / "out")
    assert folder == tmp_path / "out" / "hubs" / "own" and [h["dataset"] for h in hidden] == ["own"]
    assert sorted(p.name for p in folder.iterdir()) == ["one", "two"]
    evil = BenchTask("../../escape", tmp_path / "hub" / "own", tmp_path / "p.txt", tmp_path / "t.jsonl", None, {})
    with pytest.raises(UnsafeNameError):
        hub_without(evil, [tmp_path / "hub"], tmp_path / "out")
    assert not (tmp_path / "escape").exists()


# Any `... / something.name` or `joinpath(... .name)` must go through safe_name.
_RAW_JOIN = re.compile(r"/\s*[A-Za-z_][\w.]*\.(name|id|repo_id|dataset|model)\b(?!\s*\()|joinpath\([^)]*\.(name|id)\b")


def test_no_unchecked_name_is_joined_to_a_path() -> None:
    offenders = []
    for path in sources():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if _RAW_JOIN.search(code) and "safe_name" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_the_raw_join_check_catches_an_unchecked_join() -> None:
    assert _RAW_JOIN.search('folder = out / "hubs" / task.name')
    assert _RAW_JOIN.search("link = folder / d.name")
    assert not _RAW_JOIN.search("folder = out / check(task.name)")


# ---------------------------------------------------------------------------------------- trust_remote_code

_LOADERS = {"from_pretrained", "pipeline", "load_dataset", "AutoModel", "snapshot_download"}


def _loader_calls(tree: ast.AST) -> list[ast.Call]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in _LOADERS:
                calls.append(node)
    return calls


def test_trust_remote_code_is_never_turned_on() -> None:
    pattern = re.compile(r"trust_remote_code[\"']?\s*[:=]\s*True")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in sources() + sorted((ROOT / "benchmarks").rglob("*.py"))
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_every_model_load_passes_trust_remote_code_false_or_nothing() -> None:
    checked = 0
    problems = []
    for path in sources():
        for call in _loader_calls(ast.parse(path.read_text(encoding="utf-8"))):
            checked += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            for kw in call.keywords:
                if kw.arg is None:
                    problems.append(f"{where}: **kwargs could carry trust_remote_code")
                elif kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where}: trust_remote_code={ast.unparse(kw.value)}")
    assert checked >= 3  # the tokenizer and model loads of training and evaluation are really inspected
    assert problems == []


def test_the_load_check_catches_a_remote_code_load() -> None:
    bad = ast.parse("AutoModel.from_pretrained(path, trust_remote_code=flag)\nAutoTokenizer.from_pretrained(p, **kw)")
    calls = _loader_calls(bad)
    assert len(calls) == 2
    assert calls[0].keywords[0].arg == "trust_remote_code" and calls[1].keywords[0].arg is None


def test_one_masking_rule_for_every_writer() -> None:
    from p2m_engine.redact import MASK, redact

    assert redact("key sk-abcdef and sk-abcdef again; x stays", ["sk-abcdef", None, "x"]) == f"key {MASK} and {MASK} again; x stays"
    assert redact("nothing to hide", []) == "nothing to hide"
