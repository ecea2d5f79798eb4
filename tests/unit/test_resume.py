"""Crash and resume with real processes: `p2m build` killed with SIGKILL in the middle of generation,
then `p2m resume RUN`, against a slow OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.cli import cli
from tests.conftest import DEMO_HUB, ROOT
from tests.openai_stub import OpenAIStub

KEY = "sk-sentinel-resume-77d1e0"
PROMPT = ROOT / "examples" / "sms_spam.txt"
TEST_FILE = DEMO_HUB / "sms_spam" / "dev.jsonl"
PER_LABEL = 20  # 2 labels x 4 batches of 5: eight generation calls


def body_key(body: dict[str, Any]) -> str:
    """What makes two chat requests the same request."""
    keep = {k: body.get(k) for k in ("model", "messages", "temperature", "max_tokens", "tools")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def teacher(body: dict[str, Any]) -> tuple[str, Any]:
    """A teacher whose answer is a function of the request alone: the same request, the same examples."""
    params = body["tools"][0]["function"]["parameters"]
    label = "spam" if 'label is "spam"' in body["messages"][-1]["content"] else "ham"
    h = body_key(body)[:10]
    return "tool", {key: f"{label} message {h} item {i}" for i, key in enumerate(params["required"])}


def build_args(out: Path, stub: OpenAIStub, tiny_encoder: Path, budget: str = "", concurrency: int = 1) -> list[str]:
    return ["build", str(PROMPT), "--llm", "openai", "--base-url", stub.base_url, "--model", "gpt-test",
            "--base-model", str(tiny_encoder), "--test", str(TEST_FILE), "--out", str(out), "--planner", "rules",
            "--budget", f"per_label={PER_LABEL},epochs=1,iterations=1,target=0.01{budget}", "--seed", "3", "--yes",
            "--concurrency", str(concurrency), "--json"]


def p2m(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def resume_quickly(run: Path) -> tuple[subprocess.Popen[str], str, str]:
    """`p2m resume RUN --json` to the end, with one training epoch (resume takes its settings from config.json)."""
    config = json.loads((run / "config.json").read_text())
    config["train"]["max_epochs"] = 1
    (run / "config.json").write_text(json.dumps(config))
    resumed = p2m(["resume", str(run), "--json"])
    stdout, stderr = resumed.communicate(timeout=600)  # a bound, not a target: a loaded machine is slow
    return resumed, stdout, stderr


def rows(path: Path) -> list[tuple[str, str]]:
    return [(r["input"], r["output"]) for r in map(json.loads, path.read_text().splitlines())]


def wait_for_rows(out: Path, proc: subprocess.Popen[str], at_least: int, timeout: float = 60) -> Path:
    """The run folder, once its generated.jsonl holds `at_least` rows (the build still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for gen in out.glob("*/data/generated.jsonl"):
            if len(gen.read_text().splitlines()) >= at_least:
                return gen.parents[1]
        time.sleep(0.02)
    raise AssertionError("generation did not start in time")


# One request at a time, and four in flight together (the first four answers are appended together, the last four
# are still in flight: all eight in flight at once would leave no middle to be killed in). The same seed and
# concurrency give the same data.
@pytest.mark.parametrize("concurrency", [1, 4])
def test_killed_build_resumes_without_losing_duplicating_or_paying_twice(concurrency: int, tmp_path: Path,
                                                                          tiny_encoder: Path, p2m_home: Path) -> None:
    # The reference: the same build, uninterrupted, with a cache of its own; its step budget ends it after
    # generation (no model: exit code 2).
    with OpenAIStub(responder=teacher, model="gpt-test") as stub:
        result = CliRunner().invoke(cli, build_args(tmp_path / "ref", stub, tiny_encoder, ",steps=2", concurrency),
                                    env={"OPENAI_API_KEY": KEY, "P2M_HOME": str(tmp_path / "ref-home")})
    assert result.exit_code == 2, result.output
    reference = json.loads(result.stdout)
    assert reference["model_dir"] is None and reference["finish_reason"] == "budget: step budget of 2 reached"
    ref_rows = rows(Path(reference["run"]) / "data" / "generated.jsonl")
    assert reference["generated"] == len(ref_rows) == 2 * PER_LABEL

    out = tmp_path / "runs"
    with OpenAIStub(responder=teacher, model="gpt-test", delay_s=0.25) as stub:
        proc = p2m(build_args(out, stub, tiny_encoder, concurrency=concurrency))
        run = wait_for_rows(out, proc, at_least=10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        before = [body_key(b) for b in stub.chat_requests]
        on_disk = len((run / "data" / "generated.jsonl").read_text().splitlines())
        assert 10 <= on_disk < 2 * PER_LABEL  # killed in the middle of generation
        with sqlite3.connect(p2m_home / "llm_cache.sqlite") as db:
            cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        # Requests in flight when the build was killed never reached the cache: at most one per slot.
        assert len(set(before)) == len(before) and len(before) - concurrency <= cached <= len(before)

        resumed, stdout, stderr = resume_quickly(run)
        after = [body_key(b) for b in stub.chat_requests][len(before):]
    assert resumed.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["run"] == str(run) and summary["resumed"] and summary["model_dir"]
    assert json.loads((run / "model" / "p2m_train.json").read_text())["max_epochs"] == 1
    # Nothing lost or duplicated: the same examples as the uninterrupted build, each once.
    got = rows(run / "data" / "generated.jsonl")
    assert summary["generated"] == len(got) == reference["generated"]
    assert sorted(got) == sorted(ref_rows)
    # Nothing paid twice: only a request whose answer never reached the cache was asked again.
    repeated = [k for k in after if k in before]
    assert len(repeated) == len(before) - cached
    assert summary["llm_usage"]["calls"] == len(after)
    # The trace: one `resume` event, and every record of the graph written exactly once.
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events].count("resume") == 1
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(len(seqs)))
    assert [e["name"] for e in events if e["kind"] == "tool"] == [
        "search_models", "generate_examples", "train_model", "evaluate_model"]
    assert all(KEY.encode() not in f.read_bytes() for f in run.rglob("*") if f.is_file())

    # Resuming a finished run changes nothing.
    trace_before = (run / "trace.jsonl").read_bytes()
    again = CliRunner().invoke(cli, ["resume", str(run)], env={"OPENAI_API_KEY": KEY})
    assert again.exit_code == 0, again.output
    assert "already finished" in again.stderr
    assert (run / "trace.jsonl").read_bytes() == trace_before


def test_a_request_cut_off_by_a_killed_client_is_not_a_request() -> None:
    """A build killed while sending leaves a body shorter than its Content-Length: the stand-in must not count
    it as a request the build made (and so expect it again on resume)."""
    import socket

    with OpenAIStub(responder=teacher, model="gpt-test") as stub:
        with socket.create_connection(("127.0.0.1", stub.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400\r\n\r\n{\"model\": \"gpt-te")
        deadline = time.monotonic() + 1  # the handler reads to EOF at once; a second is ample
        while time.monotonic() < deadline and not stub.requests:
            time.sleep(0.02)
        assert stub.chat_requests == []


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["resume", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a p2m run folder" in result.stderr and "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["resume", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "is not a p2m run folder" in missing.stderr


def test_resume_of_a_run_another_process_holds(tmp_path: Path) -> None:
    import fcntl

    from agent.build import Settings
    from agent.budget import Budget
    from agent.llms import LLMSettings
    from p2m_engine.data.synth import SynthConfig
    from p2m_engine.task import parse_task
    from p2m_engine.students.train import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "task.json").write_text(json.dumps(parse_task(PROMPT.read_text()).to_dict()))
    settings = Settings(llm=LLMSettings(), budget=Budget(), planner="rules", hubs=[], test_path=None, base_model=None,
                        synth=SynthConfig(), train=TrainConfig(), seed=0)
    (run / "config.json").write_text(json.dumps(settings.to_config("prompt")))
    sqlite3.connect(run / "checkpoints.sqlite").close()
    with (run / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(cli, ["resume", str(run)])
    assert result.exit_code == 1 and "in use by another p2m process" in result.stderr


def test_exit_codes_follow_the_target_and_are_documented() -> None:
    from agent.build import exit_code, met_target

    assert met_target("model", 0.7, None) and exit_code({"met_target": True}) == 0
    assert met_target("model", 0.8, 0.8) and not met_target("model", 0.79, 0.8)
    assert not met_target("model", None, 0.5) and not met_target(None, None, None)
    assert exit_code({"met_target": False}) == 2
    # A score on the demonstrations, or on fewer than 30 real held-out rows, never confirms a target.
    assert not met_target("model", 1.0, 0.9, "demos", 3) and not met_target("model", 1.0, 0.9, "test", 29)
    assert met_target("model", 0.95, 0.9, "test", 30) and met_target("model", 0.95, 0.9, "dev", 120)


def test_the_summary_says_what_the_score_was_measured_on() -> None:
    from agent.policy import measured_on, score_measure

    state = {"best_iteration": 1, "history": [{"iteration": 1, "score_split": "demos"}],
             "metrics": {"demos": {"n": 3}, "val": {"n": 40}}}
    assert score_measure(state) == ("demos", 3)
    assert "only the 3 demonstrations" in measured_on("demos", 3) and "cannot be trusted" in measured_on("demos", 3)
    assert measured_on("test", 475) == "475 real held-out rows (test)" and "too few" in measured_on("test", 12)
    text = CliRunner().invoke(cli, ["build", "--help"]).output
    assert "--yes" in text and "0  a model was built and met the target" in text and "2  the build finished below" in text


def test_unattended_build_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", str(PROMPT), "--yes", "--hub", str(tmp_path / "none")], input="y\n")
    assert result.exit_code == 1 and "no such folder" in result.stderr and "Traceback" not in result.output


def _pure_answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
    """An answer that depends on the prompt only (like a cached or deterministic teacher)."""
    label = "spam" if 'label is "spam"' in messages[-1]["content"] else "ham"
    h = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:8]
    return {f"input_{k + 1}": f"{label} text {h} n{k}" for k in range(5)}


def test_interrupted_generation_call_replays_from_disk(tmp_path: Path) -> None:
    from p2m_engine.data.synth import SynthConfig, generate_labelled_examples
    from p2m_engine.task import parse_task
    from tests.fakes import FakeLLM

    spec = parse_task(PROMPT.read_text())
    config = SynthConfig(per_label=10, batch_size=5)
    earlier = json.dumps({"input": "an older example of ham", "output": "ham", "call": "c0", "batch": 1})
    whole = tmp_path / "whole.jsonl"
    whole.write_text(earlier + "\n")
    first = FakeLLM(_pure_answer)
    generate_labelled_examples(spec, first, whole, config, call_id="c1")  # type: ignore[arg-type]
    lines = whole.read_text().splitlines()[1:]
    assert len(lines) == 19 and first.usage.calls == 4 and all(json.loads(x)["call"] == "c1" for x in lines)
    # A crash after three batches with the last line cut short: the call runs again from its start.
    cut = tmp_path / "cut.jsonl"
    cut.write_text(earlier + "\n" + "\n".join(lines[:14]) + "\n" + lines[14][:20])
    llm = FakeLLM(_pure_answer)
    res = generate_labelled_examples(spec, llm, cut, config, call_id="c1")  # type: ignore[arg-type]
    assert llm.usage.calls == 1  # only the batch that never reached the disk
    assert llm.requests[0] == first.requests[-1]  # ... asked exactly as the first time (a cache hit)
    assert res.count == 20 and res.per_label == {"ham": 10, "spam": 10}
    got = [x for x in cut.read_text().splitlines()[1:] if x.endswith("}")]
    assert got == lines  # the same rows as the uninterrupted call, each once


def test_build_that_failed_before_its_first_step_resumes_from_the_start(tmp_path: Path, tiny_encoder: Path) -> None:
    with OpenAIStub(responder=teacher, model="gpt-test", models_status=401) as stub:
        failed = CliRunner().invoke(cli, build_args(tmp_path, stub, tiny_encoder, ",steps=2"), env={"OPENAI_API_KEY": KEY})
    assert failed.exit_code == 1 and "rejected the API key" in failed.stderr, failed.output
    (run,) = tmp_path.iterdir()
    assert not (run / "summary.json").exists()
    # The endpoint moved (another port): --base-url overrides the one in config.json.
    with OpenAIStub(responder=teacher, model="gpt-test") as stub:
        result = CliRunner().invoke(cli, ["resume", str(run), "--json", "--base-url", stub.base_url],
                                    env={"OPENAI_API_KEY": KEY})
        served = len(stub.chat_requests)
    assert result.exit_code == 2, result.output  # the step budget ends it after generation, without a model
    summary = json.loads(result.stdout)
    assert summary["generated"] == 2 * PER_LABEL == 5 * served
    assert summary["finish_reason"] == "budget: step budget of 2 reached"
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    # The failure that stopped the first build is the trace's first event; the resume follows it.
    assert events[0]["kind"] == "error" and "rejected the API key" in events[0]["error"]
    assert events[1]["kind"] == "resume" and [e["kind"] for e in events].count("resume") == 1


def trace_events(run: Path) -> list[dict[str, Any]]:
    """The complete records of a run's trace.jsonl so far (a line still being written is skipped)."""
    path = run / "trace.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def wait_inside(out: Path, proc: subprocess.Popen[str], tool: str, timeout: float = 240) -> Path:
    """The run folder, once the planner decided on `tool` and the tool has not finished yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for trace in out.glob("*/trace.jsonl"):
            events = trace_events(trace.parent)
            if any(e["kind"] == "decision" and e.get("name") == tool for e in events):
                assert not any(e["kind"] == "tool" and e.get("name") == tool for e in events), \
                    f"{tool} finished before the test could kill the build"
                return trace.parent
        time.sleep(0.005)
    raise AssertionError(f"{tool} did not start in time")


@pytest.mark.parametrize(("tool", "epochs"), [("train_model", 40), ("evaluate_model", 1)])
def test_build_killed_in_training_or_evaluation_resumes(tool: str, epochs: int, tmp_path: Path, tiny_encoder: Path,
                                                        p2m_home: Path) -> None:
    budget = f",epochs={epochs}"  # more epochs make training long enough to be caught
    # The reference: the same build with the same seed, uninterrupted, with a cache of its own (one epoch: the
    # number of epochs changes nothing about generation).
    with OpenAIStub(responder=teacher, model="gpt-test") as stub:
        result = CliRunner().invoke(cli, build_args(tmp_path / "ref", stub, tiny_encoder, ",epochs=1"),
                                    env={"OPENAI_API_KEY": KEY, "P2M_HOME": str(tmp_path / "ref-home")})
    assert result.exit_code in (0, 2), result.output
    reference = json.loads(result.stdout)
    ref_rows = rows(Path(reference["run"]) / "data" / "generated.jsonl")
    assert reference["generated"] == len(ref_rows) == 2 * PER_LABEL

    out = tmp_path / "runs"
    with OpenAIStub(responder=teacher, model="gpt-test") as stub:
        proc = p2m(build_args(out, stub, tiny_encoder, budget))
        run = wait_inside(out, proc, tool)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        events = trace_events(run)
        assert not any(e["kind"] == "tool" and e.get("name") == tool for e in events)  # killed inside the tool
        before = [body_key(b) for b in stub.chat_requests]
        assert len(before) == len(set(before)) == 2 * PER_LABEL // 5  # generation was over, each call paid once

        resumed, stdout, stderr = resume_quickly(run)
        after = [body_key(b) for b in stub.chat_requests][len(before):]
    assert resumed.returncode in (0, 2), stderr
    summary = json.loads(stdout)
    assert summary["run"] == str(run) and summary["resumed"] and summary["model_dir"]
    # The same examples as the uninterrupted build, each once, and no LLM call paid twice.
    got = rows(run / "data" / "generated.jsonl")
    assert summary["generated"] == len(got) == reference["generated"]
    assert sorted(got) == sorted(ref_rows)
    assert not set(after) & set(before)
    assert summary["llm_usage"]["calls"] == len(after)
    events = trace_events(run)
    assert [e["kind"] for e in events].count("resume") == 1
    assert [e["name"] for e in events if e["kind"] == "tool"] == [
        "search_models", "generate_examples", "train_model", "evaluate_model"]
    assert (run / "summary.json").is_file() and (run / "iterations" / "1" / "metrics.json").is_file()


def test_a_config_written_before_the_base_model_word_still_loads(tmp_path: Path) -> None:
    from agent.build import Settings, settings_from_config
    from agent.llms import LLMSettings
    from p2m_engine.data.synth import SynthConfig
    from p2m_engine.students.train import TrainConfig
    from agent.budget import Budget

    settings = Settings(llm=LLMSettings(), budget=Budget(), planner="rules", hubs=[], test_path=None,
                        base_model=str(tmp_path), synth=SynthConfig(), train=TrainConfig(), seed=0)
    cfg = settings.to_config("prompt")
    assert cfg["base_model"] == str(tmp_path.resolve()) and "student" not in cfg
    assert settings_from_config(cfg).base_model == str(tmp_path.resolve())
    old = {k: v for k, v in cfg.items() if k != "base_model"} | {"student": "/models/mine"}
    assert settings_from_config(old).base_model == "/models/mine"
