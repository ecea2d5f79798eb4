"""The run folder: one directory per build holding config, data, model, metrics and trace."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from p2m_engine.errors import DatasetError, P2MError
from p2m_engine.names import safe_name

_SAFE = re.compile(r"[^a-z0-9]+")


def p2m_home() -> Path:
    """Where p2m keeps caches shared between runs (LLM responses, model files, search index)."""
    return Path(os.environ.get("P2M_HOME") or Path.home() / ".cache" / "p2m")


def check_home() -> Path:
    """The cache folder (P2M_HOME), created if needed and checked writable, before any run folder is made.

    Raises:
        P2MError: it is a file, read-only, or cannot be created.
    """
    home = p2m_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        raise P2MError(f"The p2m cache folder {home} (P2M_HOME) is not a writable folder: "
                       f"{e.strerror or type(e).__name__}. Set P2M_HOME to a folder you can write.") from None
    return home


def slug(text: str, limit: int = 32) -> str:
    """A file-name-safe slug of free text (also used for ids that came from an LLM or the Hub)."""
    s = _SAFE.sub("-", text.lower()).strip("-")
    return s[:limit].strip("-") or "task"


def inside(*parts: str) -> list[str]:
    """The components of relative paths (`"model/card.md"` -> `["model", "card.md"]`), each checked by safe_name.

    Raises:
        UnsafeNameError: a component would leave the folder the path is joined to.
    """
    return [safe_name(c, "run file name") for part in parts for c in str(part).split("/")]


DATA_FILES = ("retrieved", "labelled", "soft_labels", "generated", "cloze", "train", "val", "dev", "test")
"""The run folder's data files (`data/<name>.jsonl`): real rows retrieved, hub text labelled by the judges (and
its soft labels), generated rows, cloze questions made from hub text (extractive QA, training only), the training
split and its held-back rows, the real dev split the build decides on, and the real test rows of a retrieved
dataset."""


def data_file(run_dir: Path, name: str) -> Path:
    """`run_dir/data/<name>.jsonl`, one of DATA_FILES (the run folder's layout is written here only).

    Raises:
        ValueError: not a data file of the layout (a typo would silently read nothing).
    """
    if name not in DATA_FILES:
        raise ValueError(f"{name!r} is not a run data file; one of {', '.join(DATA_FILES)}")
    return run_dir / "data" / f"{name}.jsonl"


@dataclass(frozen=True)
class Run:
    """Paths inside one run folder. The folder is created on `create`; files are added as stages run."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @classmethod
    def create(cls, out: Path, task_text: str) -> "Run":
        """Make a new, empty run folder under `out`.

        Raises:
            P2MError: `out` cannot be written.
        """
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(task_text, 24)}-{secrets.token_hex(2)}"
        path = out / run_id
        try:
            (path / "data").mkdir(parents=True, exist_ok=False)
            probe = path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise P2MError(f"Cannot write the run folder {path}: {e.strerror}. Choose another --out.") from e
        return cls(path)

    def path(self, *parts: str) -> Path:
        """A file or folder inside the run folder (its parent is created); parts may be `a/b` relative paths.

        Raises:
            UnsafeNameError: a part is empty, absolute, holds `..`, a backslash or NUL: it could leave the run.
        """
        p = self.dir.joinpath(*inside(*parts))
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def data(self, name: str) -> Path:
        """The data file `name` (DATA_FILES) of this run; its folder exists."""
        path = data_file(self.dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        """Write a JSON file atomically (tmp file + rename): a crash never leaves half a file."""
        target = self.path(name)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        tmp.replace(target)
        return target

    def read_json(self, name: str) -> Any:
        return json.loads(self.dir.joinpath(*inside(name)).read_text(encoding="utf-8"))


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Append rows to a JSONL file and flush to disk; returns how many were written.

    A last line cut short by a crash is closed first, so that it cannot swallow the next row.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    torn = False
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as f:
        if torn:
            f.write("\n")
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write a JSONL file from scratch (atomically)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    if tmp.exists():
        tmp.unlink()
    n = append_jsonl(tmp, rows)
    tmp.replace(path)
    return n


def read_jsonl(path: Path, *, skipped: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Read a JSONL file, skipping (and reporting in `skipped`) malformed lines.

    Raises:
        DatasetError: the file does not exist or is not UTF-8.
    """
    for _, row in read_jsonl_lines(path, skipped=skipped):
        yield row


def read_jsonl_lines(path: Path, *, skipped: list[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like `read_jsonl`, with each row's line number (1-based), so a caller can report a row it rejects.

    Raises:
        DatasetError: the file does not exist or is not UTF-8.
    """
    if not path.is_file():
        raise DatasetError(f"No such file: {path}")
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    if skipped is not None:
                        skipped.append(f"{path}:{lineno}: {e.msg}")
                    continue
                if isinstance(row, dict):
                    yield lineno, row
                elif skipped is not None:
                    skipped.append(f"{path}:{lineno}: not a JSON object")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text.") from e


def export_model(model_dir: Path, run: Run, predictions_dir: Path | None = None, metrics: dict[str, Any] | None = None) -> Path:
    """Make `model_dir` (one iteration's student) the run's model: copied to run/model, with its predictions
    copied to run/predictions and its metrics written to run/metrics.json.

    Returns:
        The exported model folder (run/model).

    Raises:
        P2MError: `model_dir` is not a folder.
    """
    import shutil

    target = run.dir / "model"
    if not model_dir.is_dir():
        raise P2MError(f"Cannot export {model_dir}: no such model folder.")
    if model_dir.resolve() != target.resolve():
        # Copy beside the target, then swap: a crash never leaves half a model in run/model.
        tmp = run.dir / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    if predictions_dir is not None and predictions_dir.is_dir():
        for f in sorted(predictions_dir.glob("*.jsonl")):
            shutil.copyfile(f, run.path("predictions", f.name))
    if metrics is not None:
        run.write_json("metrics.json", metrics)
    return target
