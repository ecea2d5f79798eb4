"""`p2m bench`: run the product on every task of a suite and compare it with baselines on the same test set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from agent.budget import Budget
from agent.build import SWITCHES, build_model
from agent.llms import LLMSettings, open_llm
from agent.ui import console
from p2m_engine.eval.bench import BenchResults, BenchTask, markdown_table, own_datasets, read_suite
from p2m_engine.eval.iteration import held_out
from p2m_engine.data.datasets import load_examples
from p2m_engine.errors import P2MError, UnsupportedTaskError
from p2m_engine.eval.metrics import task_metrics
from p2m_engine.names import safe_name
from p2m_engine.task import parse_task

SYSTEMS = ("p2m", "teacher", "trivial", "gold")
ABLATIONS = ("generated_only", "retrieved_only", *(f"no_{part}" for part in SWITCHES))
LATENCY_SAMPLES = 50


def student_figures(task_type: str, model_dir: Path, texts: list[str]) -> dict[str, Any]:
    """Parameters and batch-1 latency (p50 over up to 50 inputs) of a saved student."""
    from p2m_engine.eval.baselines import p50
    from p2m_engine.students import model_params, predictor

    run = predictor(task_type, model_dir)
    times = []
    for text in texts[:LATENCY_SAMPLES]:
        started = time.perf_counter()
        run([text])
        times.append((time.perf_counter() - started) * 1000)
    return {"params": model_params(model_dir), "latency_ms_p50": p50(times)}


def _score(task_type: str, gold: list[str], pred: list[str], main: str) -> dict[str, float]:
    """The task's metric (`main`) as `score`, and the others beside it (all rounded)."""
    return _score_metrics(task_metrics(task_type, gold, pred), main)


def hub_without(task: BenchTask, hubs: list[Path], out: Path,
                cache: dict[Path, set[bytes]] | None = None) -> tuple[list[Path], list[dict[str, str]]]:
    """A hub of links to every dataset of `hubs` except the task's own data: the task as if unseen.

    The task's own data is its folder, a dataset of its name, or one sharing rows with its test file
    (`p2m_engine.eval.bench.own_datasets`). Returns the hub folder and the hidden datasets with why.
    """
    from p2m_engine.data.datasets import scan_hub

    folder = out / "hubs" / safe_name(task.name, "task name")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():  # links of an earlier run may point at data this run hides
        if old.is_symlink():
            old.unlink()
    datasets = scan_hub(hubs)
    hidden = own_datasets(task, datasets, cache)
    hidden_paths = {h["path"] for h in hidden}
    for d in datasets:
        link = folder / safe_name(d.name, "dataset name")
        if str(d.path.resolve()) not in hidden_paths and not link.exists():
            link.symlink_to(d.path.resolve(), target_is_directory=True)
    return [folder], hidden


def own_unlabelled(task: BenchTask, split: str, out: Path) -> Path:
    """The inputs of the task's `split` file without their labels, and without any input its test file holds:
    the `--unlabelled` file of a user who has text of the task but no labels (written to out/unlabelled/).

    Raises:
        P2MError: the task has no such split.
    """
    from p2m_engine.data.synth import normalize
    from p2m_engine.runs import write_jsonl

    source = task.dir / f"{split}.jsonl"
    if not source.is_file():
        raise P2MError(f"--unlabelled-split {split}: the task {task.name} has no {source.name}.")
    held = {normalize(e.input) for e in load_examples(task.test_path)}
    path = out / "unlabelled" / f"{safe_name(task.name, 'task name')}.jsonl"
    write_jsonl(path, ({"input": e.input} for e in load_examples(source) if normalize(e.input) not in held))
    return path


def run_bench(suite: Path, *, hubs: list[Path], settings: LLMSettings, budget: Budget, out: Path,
              tasks: list[str] | None, systems: list[str], base_model: str | None, teacher_limit: int | None,
              gold_limit: int, command: str, exclude_own: bool = False, test_name: str = "test.jsonl",
              seed: int = 0, unlabelled_split: str | None = None) -> dict[str, Any]:
    """Benchmark every task of `suite`; results resume from out/results.json. Returns the results.

    With `unlabelled_split`, each p2m build gets that split's inputs, labels removed, as its `--unlabelled` file.
    """
    bench_tasks = read_suite(suite, tasks, test_name)
    results = BenchResults(out / "results.json", {"command": command, "llm": settings.describe(),
                                                   "budget": budget.to_dict(), "seed": seed})
    keys: dict[Path, set[bytes]] = {}  # row hashes of hub datasets, read once for all tasks
    for task in bench_tasks:
        spec = parse_task(task.prompt_path.read_text(encoding="utf-8"))
        # Every system is scored on the same rows: the test file without the prompt's demonstrations, which a
        # build trains on and the teacher sees in its prompt (a build drops them from its test split too).
        test = held_out(load_examples(task.test_path), spec.examples)
        metric = task.metric(spec.task_type)
        results.task(task.name, spec.task_type, metric, len(test))
        console.print(f"[bold]{escape(task.name)}[/] ({spec.task_type}, {len(test)} test examples)")
        task_hubs = hubs
        if exclude_own and hubs and not all(results.has(task.name, s) for s in systems):
            task_hubs, hidden = hub_without(task, hubs, out, keys)
            results.hidden(task.name, hidden)
            console.print("  hidden from the hub: " + escape(", ".join(f"{h['dataset']} ({h['reason']})" for h in hidden)
                                                             or "nothing"))
        unlabelled = own_unlabelled(task, unlabelled_split, out) \
            if unlabelled_split and not all(results.has(task.name, s) for s in systems) else None
        for system in systems:
            if results.has(task.name, system):
                continue
            try:
                figures = _run_system(system, task, spec, test, metric, hubs=task_hubs, settings=settings, budget=budget,
                                      out=out, base_model=base_model, teacher_limit=teacher_limit, gold_limit=gold_limit, seed=seed,
                                      unlabelled=unlabelled)
            except UnsupportedTaskError as e:
                figures = {"score": None, "status": "unsupported", "reason": str(e)}
            results.record(task.name, system, figures)
            console.print(f"  {escape(system)}: {figures.get('score')}")
    commands = "\n".join(f"{i}. `{r['command']}`" for i, r in enumerate(results.data["runs"]))
    (out / "results.md").write_text(f"Runs that made this table (a row's `by_run` in results.json names its run; none: run 0):\n\n"
                                    f"{commands}\n\n{markdown_table(results.data)}", encoding="utf-8")
    return results.data


def _run_system(system: str, task: BenchTask, spec: Any, test: list[Any], metric: str, *, hubs: list[Path],
                settings: LLMSettings, budget: Budget, out: Path, base_model: str | None, teacher_limit: int | None,
                gold_limit: int, seed: int = 0, unlabelled: Path | None = None) -> dict[str, Any]:
    gold_outputs = [e.output for e in test]
    if system == "trivial":
        if spec.task_type != "classification":
            return {**_score(spec.task_type, gold_outputs, [e.input for e in test], metric), "rule": "copy the input"}
        from p2m_engine.eval.baselines import majority_label

        source = load_examples(task.train_path) if task.train_path else list(spec.examples)
        label = majority_label(source)
        return {**_score(spec.task_type, gold_outputs, [label] * len(test), metric), "rule": "majority label", "label": label}
    if system == "teacher":
        return _teacher(spec, test, metric, settings, out, teacher_limit)
    if system == "gold":
        return _gold(task, spec, test, metric, out, base_model, gold_limit, budget.targets.epochs)
    build_hubs = [] if system == "generated_only" else hubs
    build_budget = budget.replace(per_label=0) if system == "retrieved_only" else budget
    summary = build_model(spec, str(task.prompt_path), backend=settings.backend, model=settings.model,
                          base_url=settings.base_url, hubs=build_hubs, test_path=task.test_path,
                          out=out / "runs" / safe_name(task.name, "task name") / safe_name(system, "system"), budget=build_budget, planner="auto", base_model=base_model,
                          seed=seed, quiet=True, off=[system.removeprefix("no_")] if system.startswith("no_") else [],
                          unlabelled=unlabelled)
    if not summary.get("model_dir"):
        return {"score": None, "status": "no model", "reason": summary.get("finish_reason")}
    usage = summary["llm_usage"]
    return {**_score_metrics(summary["metrics"]["test"]["metrics"], metric),
            **student_figures(spec.task_type, Path(summary["model_dir"]), [e.input for e in test]),
            "build_s": summary["wall_s"], "llm_calls": usage["calls"],
            "llm_tokens": usage["prompt_tokens"] + usage["completion_tokens"], "run": summary["run"]}


def _teacher(spec: Any, test: list[Any], metric: str, settings: LLMSettings, out: Path, limit: int | None) -> dict[str, Any]:
    from p2m_engine.eval.baselines import p50, teacher_answer, teacher_classify
    from p2m_engine.llm.embedded import EMBEDDED_MODEL, PACKAGED

    rows = test[:limit] if limit else test
    ask = teacher_classify if spec.task_type == "classification" else teacher_answer
    with open_llm(settings, out / "logs") as llm:
        outputs, latencies = ask(spec, llm, [e.input for e in rows])
        usage = llm.usage.to_dict()
    packaged = PACKAGED.get(settings.model or EMBEDDED_MODEL) if settings.backend == "embedded" else None
    params = packaged.params if packaged else None
    return {**_score(spec.task_type, [e.output for e in rows], outputs, metric), "n": len(rows), "params": params,
            "latency_ms_p50": p50(latencies), "llm_calls": usage["calls"],
            "llm_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _gold(task: BenchTask, spec: Any, test: list[Any], metric: str, out: Path, base_model: str | None, limit: int,
          epochs: float) -> dict[str, Any]:
    from p2m_engine.students.models import search_models
    from p2m_engine.students import evaluate_student, train_student
    from p2m_engine.data.synth import normalize
    from p2m_engine.students.train import TrainConfig, split_validation

    if task.train_path is None:
        return {"score": None, "status": "no train split"}
    banned = {normalize(e.input) for e in test}
    rows = [e for e in load_examples(task.train_path)
            if (not spec.labels or e.output in spec.labels) and normalize(e.input) not in banned]
    rows = rows[:limit]
    base = search_models(spec.task_type, base_model=base_model)[0]
    train, val = split_validation(rows, stratify=spec.task_type == "classification")
    model_dir = out / "runs" / safe_name(task.name, "task name") / "gold" / "model"
    res = train_student(spec, train, val, model_dir, TrainConfig(base_model=base.path, epochs=epochs))
    report = evaluate_student(spec.task_type, model_dir, test, "test")
    return {**_score_metrics(report.metrics, metric), "n_train": res.n_train, "train_s": round(res.seconds, 1)}


def _score_metrics(metrics: dict[str, float], main: str) -> dict[str, float]:
    """`main` of `metrics` as `score`, and the others beside it (all rounded)."""
    return {"score": round(metrics[main], 4), **{k: round(v, 4) for k, v in metrics.items() if k != main}}


def check_systems(names: list[str]) -> list[str]:
    """Validate --systems names."""
    unknown = set(names) - set(SYSTEMS) - set(ABLATIONS)
    if unknown:
        raise P2MError(f"Unknown system(s) {sorted(unknown)}; choose from {', '.join(SYSTEMS + ABLATIONS)}.")
    return names
