"""Benchmark suites: task folders (prompt.txt + test.jsonl), result files that resume, and the table."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from p2m_engine.errors import P2MError
from p2m_engine.names import name_problem
from p2m_engine.runs import read_jsonl_lines
from p2m_engine.data.synth import normalize
from p2m_engine.types import MAIN_METRIC, METRICS

logger = logging.getLogger(__name__)


# Names a dataset card gives the metrics p2m computes under another name (SQuAD's exact match is p2m's).
METRIC_ALIASES = {"squad_exact_match": "exact_match", "em": "exact_match", "chrf": "chrf++", "acc": "accuracy",
                  "squad_f1": "f1"}


@dataclass(frozen=True)
class BenchTask:
    """One task of a suite: its prompt, its test file, and (optionally) a real train split for the gold bound."""

    name: str
    dir: Path
    prompt_path: Path
    test_path: Path
    train_path: Path | None
    info: dict[str, Any]

    def metric(self, task_type: str) -> str:
        """The metric the task's `dataset_info.json` declares (`metric`: e.g. exact match for a math answer, where
        generation's main metric is chrF++) when p2m computes it for the task type; else the type's main metric."""
        declared = str(self.info.get("metric") or "").strip().lower()
        declared = METRIC_ALIASES.get(declared, declared)
        return declared if declared in METRICS.get(task_type, ()) else MAIN_METRIC[task_type]


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


# A hub dataset shares rows with a task's test file when at least SHARED_ROWS of the test inputs are among its
# rows, or at least SHARED_SHARE of them (a test file of a handful of rows).
SHARED_ROWS = 3
SHARED_SHARE = 0.1


def row_keys(paths: list[Path]) -> set[bytes]:
    """Hashes of the normalized `input` text of every row of some JSONL files (empty inputs are left out).

    Normalization is `synth.normalize` (lower case, no punctuation or white space), so a copy re-cased or
    re-punctuated still matches; 8-byte hashes keep the sets of a whole hub small.
    """
    keys: set[bytes] = set()
    for path in paths:
        for _, row in read_jsonl_lines(path):
            text = normalize(str(row.get("input") or ""))
            if text:
                keys.add(hashlib.blake2b(text.encode(), digest_size=8).digest())
    return keys


def shares_rows(shared: int, n_test: int) -> bool:
    """Whether `shared` test inputs found in a dataset make it a copy of the test data.

    A dataset shares rows with a test file of `n_test` distinct inputs when at least SHARED_ROWS (3) of them,
    or at least SHARED_SHARE (10%) of them, are among its rows. One or two matches alone are not enough in a
    larger test file: short, common inputs ("thank you", "what time is it?") turn up in unrelated datasets,
    and hiding those would remove real data the task could legitimately retrieve.
    """
    return shared > 0 and (shared >= SHARED_ROWS or shared >= SHARED_SHARE * n_test)


def own_dataset_reason(task: BenchTask, name: str, folder: Path, test_keys: set[bytes],
                       dataset_keys: Callable[[], set[bytes]]) -> str | None:
    """Why the hub dataset `name` at `folder` is the task's own data (None: it is not).

    It is when it is the task's folder, when it has the task's name (case aside), or when it shares rows with
    the task's test file (see `shares_rows`; `dataset_keys` gives its `row_keys`, read only when needed).
    """
    if folder.resolve() == task.dir.resolve():
        return "the task's own folder"
    if name.lower() == task.name.lower():
        return "has the task's name"
    shared = len(test_keys & dataset_keys())
    if shares_rows(shared, len(test_keys)):
        return f"shares rows with the test file ({shared} of {len(test_keys)} test inputs)"
    return None


def own_datasets(task: BenchTask, datasets: list[Any], cache: dict[Path, set[bytes]] | None = None) -> list[dict[str, str]]:
    """The hub datasets that are the task's own data, so that a benchmark can hide them (`--exclude-own`).

    Args:
        task: the suite task.
        datasets: hub datasets (records with `name` and `path`, e.g. `datasets.HubDataset`).
        cache: row keys of dataset folders already read (filled in; pass the same dict for every task).

    Returns:
        One record per hidden dataset: its name, its folder and why it is hidden (see `own_dataset_reason`).
    """
    cache = {} if cache is None else cache
    test_keys = row_keys([task.test_path])
    hidden = []
    for d in datasets:
        folder = Path(d.path).resolve()

        def keys(folder: Path = folder) -> set[bytes]:
            if folder not in cache:
                cache[folder] = row_keys(sorted(folder.glob("*.jsonl")))
            return cache[folder]

        reason = own_dataset_reason(task, d.name, folder, test_keys, keys)
        if reason:
            hidden.append({"dataset": d.name, "path": str(folder), "reason": reason})
    return hidden


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

    def hidden(self, task: str, records: list[dict[str, str]]) -> None:
        """Record which hub datasets this run hid from the task's builds, and why (`--exclude-own`)."""
        self.data["tasks"][task]["hidden_from_hub"] = records
        self.save()

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
    present = list(dict.fromkeys(s for t in data["tasks"].values() for s in t["systems"]))
    # p2m first, then its ablations (the known ones, then any other, e.g. no_prior), then the baselines.
    systems = [s for s in SYSTEM_ORDER[:3] if s in present] + [s for s in present if s not in SYSTEM_ORDER] + \
        [s for s in SYSTEM_ORDER[3:] if s in present]
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
    hidden = [f"- {name}: " + ("; ".join(f"`{h['dataset']}` ({h['reason']})" for h in t["hidden_from_hub"]) or "nothing")
              for name, t in data["tasks"].items() if "hidden_from_hub" in t]
    if hidden:
        lines += ["", "Hidden from the hub (`--exclude-own`: the task's own dataset is not available to its builds):", "",
                  *hidden]
    return "\n".join(lines) + "\n"


def _num(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return ""
    return f"{n / 1e6:.1f}M"
