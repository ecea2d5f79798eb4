"""A child started through p2m_engine.llm.child dies with its parent, even when the parent is killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "p2m_engine.llm.child", str(os.getpid()), "http.server", "0",
                          "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return False
    return "State:\tZ" not in status.read_text()  # a zombie has exited; only its reaping is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_child_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    assert _alive(child)  # the module runs under the guard
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_child_runs_the_module_with_its_arguments(tmp_path: Path) -> None:
    script = tmp_path / "mod_under_test.py"
    script.write_text("import sys\nprint('args', sys.argv[1:])\n")
    out = subprocess.run([sys.executable, "-m", "p2m_engine.llm.child", str(os.getpid()), "mod_under_test", "a", "b"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"})
    assert out.returncode == 0 and out.stdout.strip() == "args ['a', 'b']"
