"""The planner LLM against the rules (a script that runs builds and prints figures; never a timed test).

For each task folder (prompt.txt, dev.jsonl as the test file), two builds with the same budget, seed and LLM
cache: `--planner llm` and `--planner rules`. Then, from each run's trace:
- asked: decisions where the planner LLM was asked (more than one action allowed);
- valid: those it answered with an allowed action and usable arguments (the rest fell back to the rules);
- same_as_rules: whether the LLM-led build took the same steps as the rules-led one;
- llm_args: decisions whose arguments the LLM set (and the policy accepted);
- the test score and the wall time of each build.
The rules build runs second, so it reuses the teacher's cached answers: compare the scores, not the times.

Usage:
    .venv/bin/python benchmarks/planner.py TASK_DIR... --hub ../shared/data --out benchmarks/results/planner \
        [--budget retrieved=300,epochs=2,iterations=3,per_label=10] [--llm embedded]
    .venv/bin/python benchmarks/planner.py --summarize RUNS_DIR --out benchmarks/results/planner
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLANNERS = ("llm", "rules")


def build(task: Path, planner: str, hub: Path, budget: str, runs: Path, llm: str) -> None:
    """One `p2m build` of the task's prompt with its dev split as the test file."""
    out = runs / f"{task.name}-{planner}"
    cmd = [sys.executable, "-m", "agent.cli", "build", str(task / "prompt.txt"), "--hub", str(hub), "--llm", llm,
           "--test", str(task / "dev.jsonl"), "--planner", planner, "--budget", budget, "--out", str(out),
           "--yes", "--json"]
    with (runs / f"{out.name}.json").open("w") as stdout, (runs / f"{out.name}.err").open("w") as stderr:
        subprocess.run(cmd, cwd=ROOT, stdout=stdout, stderr=stderr, env={**os.environ, "PYTHONPATH": str(ROOT)})


def figures(runs: Path, task: str, planner: str) -> dict[str, Any]:
    """What one build's summary and trace say about its planner."""
    summary = json.loads((runs / f"{task}-{planner}.json").read_text())
    trace = next((runs / f"{task}-{planner}").glob("*/trace.jsonl"))
    decisions = [e for e in map(json.loads, trace.read_text().splitlines()) if e.get("kind") == "decision"]
    asked = [d for d in decisions if d["decided_by"] == "llm" or str(d.get("reason", "")).startswith("fallback to rules")]
    return {"task": task, "planner": planner, "score": summary.get("score"), "score_split": summary.get("score_split"),
            "minutes": round(summary.get("wall_s", 0) / 60, 1), "asked": len(asked),
            "valid": sum(d["decided_by"] == "llm" for d in asked),
            "llm_args": sum(d.get("args_by") == "llm" for d in decisions),
            "decisions": [d["name"] for d in decisions], "finish_reason": summary.get("finish_reason"),
            "refused": [d["reason"][:160] for d in asked if d["decided_by"] != "llm"],
            "planner_s": [round(d.get("duration_ms", 0) / 1000, 1) for d in asked]}


def table(rows: list[dict[str, Any]]) -> str:
    keys = ["task", "planner", "score", "asked", "valid", "same_as_rules", "llm_args", "minutes"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summarize(runs: Path, out: Path, command: str) -> None:
    tasks = sorted({p.name.rsplit("-", 1)[0] for p in runs.glob("*-llm.json")})
    rows = []
    for task in tasks:
        pair = {p: figures(runs, task, p) for p in PLANNERS
                if (runs / f"{task}-{p}.json").is_file() and (runs / f"{task}-{p}.json").stat().st_size}
        if "llm" in pair and "rules" in pair:
            # Same decision list as the rules build: every valid answer chose what the rules chose.
            pair["llm"]["same_as_rules"] = pair["llm"]["decisions"] == pair["rules"]["decisions"]
        rows += pair.values()
    out.mkdir(parents=True, exist_ok=True)
    asked = sum(r["asked"] for r in rows if r["planner"] == "llm")
    valid = sum(r["valid"] for r in rows if r["planner"] == "llm")
    md = (f"`{command}` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n\n" + table(rows)
          + f"\nValid planner answers: {valid} of {asked}.\n\nRefused answers (the rules took those steps):\n\n"
          + "".join(f"- {r['task']}: {why}\n" for r in rows for why in r["refused"]))
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    (out / "results.md").write_text(md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tasks", nargs="*", type=Path)
    ap.add_argument("--hub", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--budget", default="retrieved=300,epochs=2,iterations=3,per_label=10")
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--runs", type=Path, help="where the run folders go (default: OUT/runs)")
    ap.add_argument("--summarize", type=Path, help="only summarize the run folders already in this folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "planner")
    args = ap.parse_args()
    runs = args.summarize or args.runs or args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for task in args.tasks:
            for planner in PLANNERS:  # the LLM first: the rules build then reuses its cached teacher answers
                build(task.resolve(), planner, args.hub, args.budget, runs, args.llm)
    summarize(runs, args.out, "python benchmarks/planner.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
