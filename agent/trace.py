"""The decision trace: append-only JSON lines in the run folder, with secrets redacted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable

from p2m_engine.redact import redact
from p2m_engine.runs import append_jsonl, read_jsonl

TRACE_FILE = "trace.jsonl"


class TraceWriter:
    """Appends trace events to run_dir/trace.jsonl; strings equal to a secret are never written."""

    def __init__(self, run_dir: Path, run_id: str, secrets: Iterable[str] = ()) -> None:
        self.path = run_dir / TRACE_FILE
        self.run_id = run_id
        self._secrets = list(secrets)

    def write(self, events: Iterable[dict[str, Any]]) -> None:
        rows = []
        for e in events:
            row = {"run_id": self.run_id, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **e}
            rows.append(json.loads(redact(json.dumps(row, ensure_ascii=False, default=str), self._secrets)))
        append_jsonl(self.path, rows)


def read_trace(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / TRACE_FILE
    return list(read_jsonl(path)) if path.is_file() else []
