"""Reliability benchmark: p2m's LLM client and whole builds against a loopback server that misbehaves.

For every fault of tests/faulty_server.py (429 with Retry-After, 500, 503, timeouts, connection resets,
truncated and malformed bodies, wrong-schema answers, empty `choices`, error bodies, slow answers):

- calls: N `LLM.call_tool` calls, each meeting the fault on its first request;
- builds: N whole `p2m build`s (OpenAI path, LLM planner) with the fault on one request in three,
  compared with a clean build of the same seed;

then a mix of every fault on one request in two, and a service that goes down for good mid-generation.
With --hardening (the default when builds run), two more checks of what the user sees (issue 14):

- mid-build failure: the service goes down for good after a few requests; the one error line must name the
  run folder and `p2m resume RUN`, the trace must end with an `error` event, and `p2m resume` against a
  healthy service must finish the build with no example lost;
- hostile text: the teacher's plan reasons and generated examples carry Rich markup (`[/bold]`, `[/INST]`) and
  terminal escapes (clear screen, OSC window title, C1 CSI, bidi override); the build and `p2m trace RUN` must
  finish, and nothing they print may hold a control character.
"examples lost" counts examples the server sent in complete answers that are not in the run's
generated.jsonl (it must be 0, also for a build that stopped). Everything runs on 127.0.0.1, in-process,
and stops by itself (each build is bounded by the client's timeout and retries; --max-minutes caps the rest).

    PYTHONPATH=. python benchmarks/faults.py --calls 20 --builds 1 [--no-hardening]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faulty_server import FAULTS, FaultSchedule, FaultyServer, Teacher  # noqa: E402

TIMEOUT = 1.0  # the client's timeout (s); a hanging request is held HANG s
HANG = 3.0
CLIENT_ENV = {"P2M_LLM_TIMEOUT": str(TIMEOUT), "P2M_LLM_MAX_RETRIES": "3", "P2M_LLM_MAX_BACKOFF": "0.1"}
SCHEMA = {"type": "object", "properties": {"input_1": {"type": "string"}, "input_2": {"type": "string"}},
          "required": ["input_1", "input_2"]}
MESSAGES = [{"role": "user", "content": 'Write 2 new inputs whose correct label is "spam".'}]


class RecordingTeacher(Teacher):
    """The deterministic teacher, remembering every generated input it sent in a complete answer."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        kind, value = super().__call__(body)
        if body["tool_choice"]["function"]["name"] != "choose_action":
            self.sent += list(value.values())
        return kind, value


def tiny_encoder(folder: Path) -> Path:
    """A 2-layer, hidden-size-8 BERT built from a config, with the packaged MiniLM tokenizer."""
    from tests.tiny import tiny_bert

    return tiny_bert(folder)


def run_calls(fault: str, n: int) -> tuple[int, int]:
    """N structured calls, each meeting `fault` on its first request; returns (faults injected, completed)."""
    from p2m_engine.errors import LLMError
    from p2m_engine.llm import LLM

    completed = 0
    with FaultyServer(schedule=FaultSchedule([fault], every=1 if fault == "slow" else 2), responder=Teacher(),
                      hang=HANG, retry_after="0.05") as server:
        llm = LLM(server.base_url, "bench-model", api_key="bench", timeout=TIMEOUT, max_retries=3, backoff=0.05,
                  max_backoff=0.1)
        for i in range(n):
            try:
                llm.call_tool(MESSAGES, "write_inputs", SCHEMA, variant=i)
                completed += 1
            except LLMError as e:
                print(f"  call failed under {fault}: {e}", file=sys.stderr)
        return sum(server.injected.values()), completed


def run_build(work: Path, name: str, encoder: Path, schedule: Any, per_label: int) -> dict[str, Any]:
    """One `p2m build` in its own P2M_HOME against a faulty server; what the table needs."""
    from click.testing import CliRunner

    from agent.cli import cli

    hub = ROOT / "examples" / "hub"
    teacher = RecordingTeacher()
    out = work / name
    started = time.monotonic()
    with FaultyServer(schedule=schedule, responder=teacher, model="bench-model", hang=HANG, retry_after="0.05",
                      slow=0.3) as server:
        result = CliRunner().invoke(
            cli,
            ["build", str(ROOT / "examples" / "sms_spam.txt"), "--llm", "openai", "--base-url", server.base_url,
             "--model", "bench-model", "--test", str(hub / "sms_spam" / "dev.jsonl"), "--base-model", str(encoder),
             "--out", str(out / "runs"), "--budget", f"per_label={per_label},epochs=1,iterations=1", "--seed", "0", "--json"],
            env={"OPENAI_API_KEY": "bench", "P2M_HOME": str(out / "home"), **CLIENT_ENV},
        )
        injected = Counter(server.injected)
    runs = list((out / "runs").glob("*/data/generated.jsonl"))
    rows = [json.loads(x) for x in runs[0].read_text().splitlines()] if runs else []
    on_disk = Counter(r["input"] for r in rows)
    lost = sum((Counter(teacher.sent) - on_disk).values())
    ok = result.exit_code in (0, 2)  # 2: a model was built but stays under the target score
    error = "" if ok else (result.output.strip().splitlines() or ["?"])[-1][:160]
    return {"ok": ok, "rows": rows, "lost": lost, "injected": injected, "error": error,
            "seconds": time.monotonic() - started}


PAYLOAD = "[/bold] [/INST] [red]x[/red] \x1b[2J\x1b]0;pwned\x07 \x9b31m \u202eevil"
CONTROL = ("\x1b", "\x07", "\x9b", "\u202e")


class HostileTeacher(RecordingTeacher):
    """The recording teacher, with markup and escape sequences in every plan reason and generated input."""

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        kind, value = Teacher.__call__(self, body)
        if body["tool_choice"]["function"]["name"] == "choose_action":
            value = {**value, "reason": PAYLOAD}
        elif isinstance(value, dict):
            value = {k: f"{v} {PAYLOAD}" if isinstance(v, str) else v for k, v in value.items()}
            self.sent += [v for v in value.values() if isinstance(v, str)]
        return kind, value


def _invoke(args: list[str], env: dict[str, str]) -> Any:
    from click.testing import CliRunner

    from agent.cli import cli

    return CliRunner().invoke(cli, args, env=env)


def hardening(work: Path, encoder: Path, per_label: int) -> list[list[str]]:
    """The two checks of what a user sees (module docstring); one table row each."""
    hub = ROOT / "examples" / "hub"
    rows: list[list[str]] = []
    # 1. The service goes down for good mid-build, then comes back for `p2m resume`.
    out = work / "down-then-resume"
    env = {"OPENAI_API_KEY": "bench", "P2M_HOME": str(out / "home"), **CLIENT_ENV}
    teacher = RecordingTeacher()
    started = time.monotonic()
    with FaultyServer(schedule=FaultSchedule(["503"], every=1, start=4), responder=teacher, model="bench-model",
                      hang=HANG, retry_after="0.05") as server:
        first = _invoke(["build", str(ROOT / "examples" / "sms_spam.txt"), "--llm", "openai", "--base-url",
                         server.base_url, "--model", "bench-model", "--test", str(hub / "sms_spam" / "dev.jsonl"),
                         "--base-model", str(encoder), "--out", str(out / "runs"), "--budget",
                         f"per_label={per_label},epochs=1,iterations=1", "--yes"], env)
    runs = sorted((out / "runs").glob("*/trace.jsonl"))
    run = runs[0].parent if runs else None
    line = (first.stderr.strip().splitlines() or [""])[-1]
    named = run is not None and str(run) in line and f"p2m resume {run}" in line
    last = json.loads(runs[0].read_text().splitlines()[-1]) if runs else {}
    resumed_ok, lost = False, "-"
    if run is not None:
        with FaultyServer(schedule=None, responder=teacher, model="bench-model", hang=HANG) as server:
            again = _invoke(["resume", str(run), "--base-url", server.base_url, "--json"], env)
        resumed_ok = again.exit_code in (0, 2)
        on_disk = Counter(json.loads(x)["input"] for x in (run / "data" / "generated.jsonl").read_text().splitlines()) \
            if (run / "data" / "generated.jsonl").is_file() else Counter()
        lost = str(sum((Counter(teacher.sent) - on_disk).values()))
    rows.append(["mid-build failure, then resume", f"exit {first.exit_code}", "yes" if named else "NO",
                 "yes" if last.get("kind") == "error" else "NO", "yes" if resumed_ok else "NO", lost,
                 f"{time.monotonic() - started:.0f}"])
    # 2. Markup and escapes from the teacher, through the build and `p2m trace`.
    out = work / "hostile"
    env = {"OPENAI_API_KEY": "bench", "P2M_HOME": str(out / "home"), **CLIENT_ENV}
    started = time.monotonic()
    with FaultyServer(schedule=None, responder=HostileTeacher(), model="bench-model", hang=HANG) as server:
        built = _invoke(["build", str(ROOT / "examples" / "sms_spam.txt"), "--llm", "openai", "--base-url",
                         server.base_url, "--model", "bench-model", "--test", str(hub / "sms_spam" / "dev.jsonl"),
                         "--base-model", str(encoder), "--out", str(out / "runs"), "--budget",
                         f"per_label={per_label},epochs=1,iterations=1", "--yes"], env)
    runs = sorted((out / "runs").glob("*/trace.jsonl"))
    shown = _invoke(["trace", str(runs[0].parent)], env) if runs else None
    printed = built.output + (shown.output if shown else "")
    clean = not any(c in printed for c in CONTROL)
    rows.append(["markup and escapes from the teacher", f"exit {built.exit_code}",
                 "yes" if shown is not None and shown.exit_code == 0 else "NO", "-",
                 "yes" if built.exit_code in (0, 2) else "NO", "clean" if clean else "CONTROL CHARS",
                 f"{time.monotonic() - started:.0f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="structured calls per fault")
    parser.add_argument("--builds", type=int, default=1, help="whole builds per fault (0: calls only)")
    parser.add_argument("--per-label", type=int, default=10, help="examples generated per label in a build")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of the faults")
    parser.add_argument("--max-minutes", type=float, default=60, help="no new build starts after this")
    parser.add_argument("--no-hardening", action="store_true", help="skip the mid-build failure and hostile text checks")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.pop("OPENAI_API_KEY", None)
    deadline = time.monotonic() + args.max_minutes * 60
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="p2m-faults-") as tmp:
        work = Path(tmp)
        clean_rows: list[dict[str, Any]] | None = None
        encoder = None
        if args.builds:
            encoder = tiny_encoder(work / "tiny-bert")
            clean = run_build(work, "clean", encoder, None, args.per_label)
            if not clean["ok"]:
                print(f"the clean build failed: {clean['error']}", file=sys.stderr)
                return 1
            clean_rows = clean["rows"]
            rows.append(["none (clean)", "0", "-", "1/1", str(clean["lost"]), "-", f"{clean['seconds']:.0f}"])
        plan: list[tuple[str, Any, bool]] = [(f, FaultSchedule([f], every=3, start=1), True) for f in faults]
        if args.builds:
            plan.append(("mix, 1 in 2", FaultSchedule(faults, every=2, start=1), False))
            plan.append(("503 for good after 3", FaultSchedule(["503"], every=1, start=3), False))
        for label, schedule, with_calls in plan:
            injected, calls = 0, "-"
            started = time.monotonic()
            if with_calls and args.calls:
                injected, done = run_calls(label, args.calls)
                calls = f"{done}/{args.calls}"
            built, lost, same = 0, 0, 0
            n = 0
            for i in range(args.builds):
                if time.monotonic() > deadline:
                    print(f"--max-minutes reached: no more builds for {label}", file=sys.stderr)
                    break
                res = run_build(work, f"{label.split(',')[0].replace(' ', '_')}-{i}", encoder, schedule,  # type: ignore[arg-type]
                                args.per_label)
                n += 1
                injected += sum(res["injected"].values())
                built += res["ok"]
                lost += res["lost"]
                same += res["ok"] and res["rows"] == clean_rows
                if res["error"]:
                    print(f"  build under {label} stopped: {res['error']}", file=sys.stderr)
            rows.append([label, str(injected), calls, f"{built}/{n}" if n else "-", str(lost) if n else "-",
                         f"{same}/{n}" if n else "-", f"{time.monotonic() - started:.0f}"])
            print(" | ".join(rows[-1]), file=sys.stderr)
        hard: list[list[str]] = []
        if args.builds and not args.no_hardening and encoder is not None:
            hard = hardening(work, encoder, args.per_label)
    head = ["fault", "injected", "calls completed", "builds completed", "examples lost", "same as clean", "s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if hard:
        head = ["check", "first command", "error names run and resume / trace shown", "trace ends with error",
                "build (or resume) finished", "examples lost / output", "s"]
        print("\n| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in hard:
            print("| " + " | ".join(r) + " |")
    failed = any("NO" in r or "CONTROL CHARS" in r for r in hard) or bool(hard and hard[0][5] not in ("0", "-"))
    return 0 if all(r[4] in ("0", "-") for r in rows) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
