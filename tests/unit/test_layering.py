"""Layering: the engine knows nothing of the agent/LangChain; tools never import the agent; fast CLI start."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]

ENGINE_FORBIDDEN = {"langgraph", "langchain", "langchain_core", "langchain_openai", "agent", "tools"}


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str, forbidden: set[str]) -> list[str]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no .py files under {package}/"
    bad = []
    for f in files:
        for lineno, name in _absolute_imports(f):
            if name.split(".")[0] in forbidden:
                bad.append(f"{f.relative_to(ROOT)}:{lineno}: import {name}")
    return bad


def test_helper_detects_forbidden_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import os\ndef f():\n    from langchain_core.tools import tool\nimport agent.cli as c\nfrom . import x\n")
    names = {n.split(".")[0] for _, n in _absolute_imports(src)}
    assert names == {"os", "langchain_core", "agent"}


def test_engine_imports_no_agent_or_langchain() -> None:
    assert _violations("p2m_engine", ENGINE_FORBIDDEN) == []


def test_tools_never_import_agent() -> None:
    assert _violations("tools", {"agent"}) == []


def test_the_graph_knows_no_front_end() -> None:
    # The graph and its nodes run unattended; the screens (chat, rich display, CLI) sit on top of them.
    front_ends = {"agent.chat", "agent.ui", "agent.display", "agent.cli", "agent.report"}
    for module in ("graph", "nodes", "clarify", "planner", "policy"):
        names = {name for _, name in _absolute_imports(ROOT / "agent" / f"{module}.py")}
        assert not names & front_ends, (module, names & front_ends)


def test_cli_import_does_not_load_torch_or_transformers() -> None:
    code = (
        "import sys, agent.cli\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "none", f"loaded at CLI import: {result.stdout.strip()}"


def test_the_llm_client_needs_no_other_part_of_the_engine() -> None:
    # The transport (client, cache, prices, embedded server) sits below data, students and evaluation.
    parts = {"p2m_engine.data", "p2m_engine.students", "p2m_engine.eval"}
    bad = [f"{f.relative_to(ROOT)}: {name}" for f in sorted((ROOT / "p2m_engine" / "llm").rglob("*.py"))
           for _, name in _absolute_imports(f) if any(name == p or name.startswith(p + ".") for p in parts)]
    assert bad == []
    assert {p.name for p in (ROOT / "p2m_engine").iterdir() if p.is_dir() and (p / "__init__.py").is_file()} >= \
        {"llm", "data", "students", "eval"}
