"""What the terminal shows: live progress of a build, its final summary, and the trace as a tree."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agent.display import plain, safe
from p2m_engine.runs import Run

console = Console(stderr=True)


class BuildDisplay:
    """Rich progress bars per stage plus one line per decision and tool result.

    The bars run only while work runs: before a chat message (a question, the plan, an answer) the bars of
    finished work are left where they are and dropped, so that they are never drawn again below later text.
    Text from the task, the trace or an LLM is shown as plain text, never read as Rich markup.
    """

    def __init__(self, run: Run, quiet: bool = False, verb: str = "build") -> None:
        self.run = run
        self.quiet = quiet
        self.verb = verb
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, disable=quiet)
        self._tasks: dict[str, Any] = {}
        self._running = False

    def __enter__(self) -> "BuildDisplay":
        if not self.quiet:
            console.print(f"[bold]p2m {self.verb}[/] → {safe(self.run.dir)}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._settle()

    def _settle(self) -> None:
        """Stop the bars where they stand (their last state stays on screen, above what comes next) and forget
        them: a later stage starts a fresh set."""
        if self._running:
            self._progress.stop()
            self._running = False
        for task in self._tasks.values():
            self._progress.remove_task(task)
        self._tasks.clear()

    def progress(self, stage: str, done: int, total: int) -> None:
        if not self._running:
            self._progress.start()
            self._running = True
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)

    def update(self, node: str, delta: dict[str, Any]) -> None:
        for e in delta.get("trace", []):
            if e["kind"] == "decision":
                self._progress.console.print(f"[cyan]▶ {safe(e['name'])}[/] [dim]({safe(e['decided_by'])}: "
                                             f"{safe(e['reason'])})[/]")
            elif e["kind"] == "tool":
                style = "green" if e.get("ok") else "red"
                detail = str(e.get("error") or e.get("output_summary", ""))[:200]
                self._progress.console.print(f"  [{style}]{safe(e['name'])}[/] {e.get('duration_ms', 0) / 1000:.1f}s "
                                             f"[dim]{safe(detail)}[/]")
                if e.get("skipped_lines"):
                    self.warn(skipped_line(e))
            elif e["kind"] == "warning":
                self.warn(str(e.get("message", "")))
            elif e["kind"] == "iteration":
                self._progress.console.print(f"[bold]iteration {safe(e['iteration'])}[/]: {safe(iteration_line(e))}")

    def ask(self, prompt: dict[str, Any]) -> str:
        """Show a question of the agent (an interrupt) and read the user's answer, with progress paused."""
        title = "plan" if prompt.get("kind") == "plan" else "question"
        self._settle()
        console.print(Panel(Text(plain(prompt.get("text", prompt))), title=f"p2m {title}", border_style="magenta"))
        return self.read()

    def read(self) -> str:
        """The user's next line in a chat (no bars while typing; the next stage of work starts fresh ones)."""
        self._settle()
        try:
            return console.input("[bold magenta]you>[/] ")
        except EOFError:
            return "quit"

    def note(self, text: str) -> None:
        """A dim line above the progress bars (nothing when quiet)."""
        if not self.quiet:
            self._progress.console.print(f"[dim]{safe(text)}[/]")

    def warn(self, text: str) -> None:
        """A yellow warning line (also under --json: it goes to stderr, the JSON to stdout)."""
        self._progress.console.print(f"[yellow]warning:[/] {safe(text)}")

    def show(self, text: str) -> None:
        """A chat message of the agent, below the bars of the work before it."""
        self._settle()
        console.print(Panel(Text(plain(text)), title="p2m", border_style="magenta"))

    def summary(self, s: dict[str, Any]) -> None:
        if self.quiet:
            return
        table = Table(title="Evaluation (never trained on)")
        reports = {k: v for k, v in (s.get("metrics") or {}).items() if isinstance(v, dict) and "metrics" in v}
        names = list(dict.fromkeys(m for rep in reports.values() for m in rep["metrics"]))
        for col in ("split", "n", *names):
            table.add_column(safe(col))
        for split, rep in reports.items():
            table.add_row(safe(split), safe(rep["n"]), *[f"{rep['metrics'].get(m, float('nan')):.4f}" for m in names])
        console.print(table)
        usage = s.get("llm_usage", {})
        target = s.get("target")
        verdict = "no target" if target is None else f"target {target}: {'met' if s.get('met_target') else 'not met'}"
        tried = " → ".join(t["name"] + ("" if t.get("ok") else " (failed)") for t in s.get("tried", []))
        lines = [
            f"finished: {s.get('finish_reason')}",
            f"score: {s.get('score')} ({verdict}) after {s.get('steps', 0)} steps",
            f"measured on: {s.get('measured_on')}",
            f"tried: {tried or 'nothing'}",
            f"data: {s.get('retrieved', 0)} retrieved ({s.get('dataset') or 'none'}), {s.get('generated', 0)} generated {s.get('per_label') or ''}",
            f"student: {s.get('base_model')} → {s.get('model_dir')}",
            f"validation score (held-back training rows): {s.get('val_score')}",
            *([f"teacher check: {check.get('summary') or check.get('skipped')}"] if (check := s.get("teacher_check")) else []),
            f"LLM{' (this session)' if s.get('resumed') else ''}: {usage.get('calls', 0)} calls ({usage.get('cached', 0)} cached), {usage.get('prompt_tokens', 0) + usage.get('completion_tokens', 0)} tokens, "
            f"{'cost unknown' if s.get('cost_usd') is None else '$' + format(s['cost_usd'], '.4f')}",
            f"wall time: {s.get('wall_s')} s · trace: p2m trace {s.get('run')}",
        ]
        console.print(Panel(Text(plain("\n".join(lines))), title="p2m build summary"))


def iteration_line(e: dict[str, Any]) -> str:
    """One evaluated iteration: the decision score it was judged by, the reported test score, the best so far."""
    best = "new best" if e.get("improved") else f"best stays iteration {e.get('best_iteration')}"
    metric = e.get("metric") or "accuracy"
    return (f"{e.get('decision_split')} {metric} {e.get('decision_score')} (decides) · {e.get('score_split')} "
            f"{metric} {e.get('score')} (reported) · {best} · weak labels: {', '.join(e.get('weak_labels') or []) or 'none'}")


def skipped_line(e: dict[str, Any]) -> str:
    """What a tool record's `skipped_lines` says: how many malformed dataset lines were left out, and the first."""
    first = (e.get("malformed_lines") or ["?"])[0]
    return f"{e['skipped_lines']} malformed line(s) of the dataset were skipped (first: {first})"


def print_trace(events: list[dict[str, Any]]) -> None:
    """Print the trace as a tree: one branch per decision with its tool result below it."""
    out = Console()
    root = Tree(f"[bold]run {safe(events[0].get('run_id'))}[/]")
    branch = root
    for e in events:
        if e.get("kind") == "decision":
            branch = root.add(f"[cyan]{safe(e.get('step'))}. {safe(e.get('name'))}[/] [dim]by {safe(e.get('decided_by'))}: "
                              f"{safe(e.get('reason'))} (allowed: {safe(', '.join(map(str, e.get('allowed') or [])))})[/]")
        elif e.get("kind") == "tool":
            style = "green" if e.get("ok") else "red"
            branch.add(f"[{style}]{'ok' if e.get('ok') else 'error'}[/] {e.get('duration_ms', 0) / 1000:.1f}s, "
                       f"{safe(e.get('llm_calls', 0))} LLM calls: {safe(e.get('error') or e.get('output_summary', ''))}")
            if e.get("skipped_lines"):
                branch.add(f"[yellow]warning[/] {safe(skipped_line(e))}")
            for c in (e.get("candidates") or [])[:5]:
                if isinstance(c, dict):
                    branch.add(f"[dim]candidate {safe(c.get('name'))} score {safe(c.get('score'))} "
                               f"{safe(c.get('reason', ''))}[/]")
        elif e.get("kind") == "human":
            for t in e.get("turns") or [{"question": "request", "answer": e.get("request"), "change": e.get("change")}]:
                root.add(f"[magenta]user[/] [dim]{safe(str(t.get('question', ''))[:80])}[/] → {safe(t.get('answer'))} "
                         f"({safe(t.get('change'))})")
        elif e.get("kind") in ("warning", "error"):
            root.add(f"[{'red' if e.get('kind') == 'error' else 'yellow'}]{safe(e.get('kind'))}[/]: "
                     f"{safe(e.get('message') or e.get('error'))}")
        elif e.get("kind") == "resume":
            root.add(f"[yellow]resume[/] at step {safe(e.get('step'))}: {safe(e.get('reason'))}")
        elif e.get("kind") == "iteration":
            root.add(f"[bold]iteration {safe(e.get('iteration'))}[/]: {safe(iteration_line(e))}")
        elif e.get("kind") == "finish":
            root.add(f"[bold]finish[/]: {safe(e.get('reason'))} · score {safe(e.get('score'))}"
                     + (f" (model of iteration {safe(e['best_iteration'])})" if e.get("best_iteration") else ""))
    out.print(root)
