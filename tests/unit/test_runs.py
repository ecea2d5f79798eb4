"""Run folders, atomic JSON, JSONL append/read and slugs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from p2m_engine.errors import DatasetError, P2MError
from p2m_engine.runs import Run, append_jsonl, read_jsonl, slug, write_jsonl


def test_create_makes_unique_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    a = Run.create(out, "Classify SMS as spam or ham")
    b = Run.create(out, "Classify SMS as spam or ham")
    assert a.dir != b.dir
    for run in (a, b):
        assert run.dir.is_dir()
        assert run.dir.parent == out
        assert (run.dir / "data").is_dir()
        assert run.id == run.dir.name
        assert not (run.dir / ".write-test").exists()
    assert "classify-sms" in a.id


def test_create_in_unwritable_dir_raises(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: chmod does not make the folder unwritable")
        with pytest.raises(P2MError, match="Cannot write"):
            Run.create(locked / "runs", "task")
    finally:
        locked.chmod(stat.S_IRWXU)


def test_create_under_a_regular_file_raises(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    with pytest.raises(P2MError, match="Cannot write"):
        Run.create(f / "runs", "task")
    assert f.read_text() == "not a folder"


def test_write_json_is_atomic_and_readable(tmp_path: Path) -> None:
    run = Run.create(tmp_path, "t")
    target = run.write_json("metrics.json", {"accuracy": 0.5, "label": "é", "path": Path("/x")})
    assert target == run.dir / "metrics.json"
    assert run.read_json("metrics.json") == {"accuracy": 0.5, "label": "é", "path": "/x"}
    assert not list(run.dir.rglob("*.tmp"))
    run.write_json("metrics.json", {"accuracy": 0.9})
    assert run.read_json("metrics.json") == {"accuracy": 0.9}
    assert not list(run.dir.rglob("*.tmp"))
    nested = run.write_json("eval/report.json", [1, 2])
    assert json.loads(nested.read_text()) == [1, 2]


def test_write_json_failure_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run.create(tmp_path, "t")
    run.write_json("config.json", {"v": 1})

    def boom(self: Path, target: Path) -> Path:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(Path, "replace", boom)
    with pytest.raises(OSError):
        run.write_json("config.json", {"v": 2})
    monkeypatch.undo()
    assert run.read_json("config.json") == {"v": 1}


def test_append_jsonl_keeps_existing_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rows.jsonl"
    assert append_jsonl(path, [{"i": 1}, {"i": 2}]) == 2
    assert append_jsonl(path, iter([{"i": 3, "s": "ü"}])) == 1
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"i": 1}, {"i": 2}, {"i": 3, "s": "ü"}]
    assert list(read_jsonl(path)) == [{"i": 1}, {"i": 2}, {"i": 3, "s": "ü"}]


def test_write_jsonl_replaces_content(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"old": true}\n')
    assert write_jsonl(path, [{"new": 1}, {"new": 2}]) == 2
    assert list(read_jsonl(path)) == [{"new": 1}, {"new": 2}]
    assert not list(tmp_path.glob("*.tmp"))


def test_read_jsonl_skips_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(
        '{"input": "a", "output": "x"}\n'  # 1
        "{not json\n"  # 2
        "\n"  # 3 (blank: ignored silently)
        "[1, 2]\n"  # 4 (not an object)
        '{"input": "b", "output": "y"}\n',  # 5
        encoding="utf-8",
    )
    skipped: list[str] = []
    rows = list(read_jsonl(path, skipped=skipped))
    assert rows == [{"input": "a", "output": "x"}, {"input": "b", "output": "y"}]
    assert len(skipped) == 2
    assert skipped[0].startswith(f"{path}:2:")
    assert skipped[1].startswith(f"{path}:4:")
    assert "not a JSON object" in skipped[1]
    # Without a list, malformed lines are still skipped.
    assert list(read_jsonl(path)) == rows


def test_read_jsonl_missing_or_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="No such file"):
        list(read_jsonl(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": 1}\n\xff\xfe\n')
    with pytest.raises(DatasetError, match="not UTF-8"):
        list(read_jsonl(bad))


@pytest.mark.parametrize("text", ["../../etc/passwd", "..", "/", "a/../b", "..\\..\\windows"])
def test_slug_is_path_safe(text: str) -> None:
    s = slug(text)
    assert s
    assert "/" not in s and "\\" not in s and ".." not in s
    assert Path(s).name == s


def test_slug_values() -> None:
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("Hello, World!") == "hello-world"
    assert slug("!!!") == "task"
    assert len(slug("x" * 100, limit=10)) == 10
    assert not slug("ab cd ef", limit=3).endswith("-")


def test_the_run_folder_owns_its_data_layout(tmp_path: Path) -> None:
    import pytest

    from p2m_engine.runs import DATA_FILES, Run, data_file

    run = Run.create(tmp_path, "t")
    assert run.data("dev") == run.dir / "data" / "dev.jsonl" == data_file(run.dir, "dev")
    assert "soft_labels" in DATA_FILES
    with pytest.raises(ValueError, match="not a run data file"):
        run.data("devv")  # a typo must not read an empty file in silence
