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


def _keyed_reads(path: Path, names: set[str]) -> list[str]:
    """`x[...]` and `x.get(...)` where x is a name or attribute in `names` (e.g. state, artifact)."""
    def named(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        return node.attr if isinstance(node, ast.Attribute) else None

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and named(node.value) in names:
            found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and named(node.func.value) in names):
            found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}")
    return found


def test_keyed_read_helper_finds_subscripts_and_gets(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("a = state['x']\nb = runtime.state.get('y')\nc = other['z']\nd = msg.artifact['k']\n")
    assert len(_keyed_reads(src, {"state"})) == 2 and len(_keyed_reads(src, {"artifact"})) == 1


def test_tools_and_agent_meet_only_through_the_contract() -> None:
    # No tool reads an agent state key by string: they read tools.contracts.StateView.
    tool_files = [f for f in sorted((ROOT / "tools").glob("*.py")) if f.name != "contracts.py"]
    assert tool_files and not [hit for f in tool_files for hit in _keyed_reads(f, {"state"})]
    # No agent module reads a tool's artifact key by string: they read tools.contracts.Folded / Evaluation.
    agent_files = sorted((ROOT / "agent").glob("*.py"))
    assert not [hit for f in agent_files for hit in _keyed_reads(f, {"art", "artifact"})]
    # Every state key the contract reads or writes is a field of the agent's state.
    from agent.state import State
    from tools.contracts import STATE_READS, STATE_WRITES, StateView

    fields = State.__required_keys__ | State.__optional_keys__
    assert STATE_READS | STATE_WRITES <= fields
    assert set(StateView.__dataclass_fields__) <= STATE_READS
