"""Benchmark suites: task folders (prompt.txt + test.jsonl), result files that resume, and the table."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2m_engine.errors import P2MError
from p2m_engine.names import name_problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchTask:
    """One task of a suite: its prompt, its test file, and (optionally) a real train split for the gold bound."""

    name: str
    dir: Path
    prompt_path: Path
    test_path: Path
    train_path: Path | None
    info: dict[str, Any]


def read_suite(suite: Path, only: list[str] | None = None, test_name: str = "test.jsonl") -> list[BenchTask]:
    """List the task folders of a suite (a folder holding prompt.txt and the test file).

    Raises:
        P2MError: no such folder, no task in it, or an unknown name in `only`.
    """
    if not suite.is_dir():
        raise P2MError(f"No suite folder at {suite}.")
    tasks = []
    for d in sorted(p for p in suite.iterdir() if p.is_dir()):
        if name_problem(d.name):
            logger.warning("skipping the task folder %r in %s: %s", d.name, suite, name_problem(d.name))
            continue
        prompt, test = d / "prompt.txt", d / test_name
        if not (prompt.is_file() and test.is_file()):
            continue
        info_path = d / "dataset_info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        train = d / "train.jsonl"
        tasks.append(BenchTask(d.name, d, prompt, test, train if train.is_file() else None, info))
    if not tasks:
        raise P2MError(f"{suite} has no task folders with prompt.txt and {test_name}.")
    if only:
        unknown = set(only) - {t.name for t in tasks}
        if unknown:
            raise P2MError(f"Unknown task(s) {sorted(unknown)}; the suite has {[t.name for t in tasks]}.")
        tasks = [t for t in tasks if t.name in only]
    return tasks


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, python {platform.python_version()}"


class BenchResults:
    """The results JSON of a bench run, written after every system so a rerun skips finished work."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        if path.is_file():
            self.data = json.loads(path.read_text(encoding="utf-8"))
        else:
            self.data = {**header, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "tasks": {},
                         "runs": []}
        # Every invocation that adds to this file is listed, so a resumed file still says what made each row.
        if "runs" not in self.data:  # a file from before runs were listed: its header names its first run
            self.data["runs"] = [{"command": self.data.get("command"), "date": self.data.get("date")}]
        self.data["runs"].append({**header, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
        self.run_index = len(self.data["runs"]) - 1

    def task(self, name: str, task_type: str, metric: str, n_test: int) -> dict[str, Any]:
        entry = self.data["tasks"].setdefault(name, {"task_type": task_type, "metric": metric, "n_test": n_test,
                                                      "systems": {}})
        return entry

    def has(self, task: str, system: str) -> bool:
        return system in self.data["tasks"].get(task, {}).get("systems", {})

    def record(self, task: str, system: str, figures: dict[str, Any]) -> None:
        self.data["tasks"][task]["systems"][system] = {**figures, "by_run": self.run_index}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(self.path)


SYSTEM_ORDER = ["p2m", "generated_only", "retrieved_only", "teacher", "trivial", "gold"]


def _cell(fig: dict[str, Any] | None) -> str:
    if fig is None:
        return ""
    if fig.get("score") is None:
        return fig.get("status", "n/a")
    return f"{100 * fig['score']:.1f}"


def markdown_table(data: dict[str, Any]) -> str:
    """One row per task: the score (in %) of every system, then the student's size and speed vs the teacher."""
    systems = [s for s in SYSTEM_ORDER if any(s in t["systems"] for t in data["tasks"].values())]
    head = ["task", "type", "metric", "n", *systems, "student params", "teacher params", "student p50 ms",
            "teacher p50 ms", "build s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, t in data["tasks"].items():
        sys_ = t["systems"]
        p2m, teacher = sys_.get("p2m", {}), sys_.get("teacher", {})
        row = [name, t["task_type"], t["metric"], str(t["n_test"]), *[_cell(sys_.get(s)) for s in systems],
               _num(p2m.get("params")), _num(teacher.get("params")), str(p2m.get("latency_ms_p50", "")),
               str(teacher.get("latency_ms_p50", "")), str(p2m.get("build_s", ""))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _num(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return ""
    return f"{n / 1e6:.1f}M"
