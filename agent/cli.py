"""The `p2m` command line: build, predict, trace."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from p2m_engine.errors import P2MError


def _offline_defaults() -> None:
    """No Hub endpoint configured: fail fast instead of retrying for ~23 s; no chromadb telemetry."""
    if not os.environ.get("HF_ENDPOINT"):
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # rich draws p2m's own progress; library bars and a known pydantic warning about the tool runtime
    # (it cannot serialise the run context, which is never serialised anyway) would only garble it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", message="Pydantic serializer warnings")


SECRET_VARS = ("OPENAI_API_KEY",)


def redact(text: str) -> str:
    """`text` with the values of secret environment variables masked."""
    for var in SECRET_VARS:
        value = os.environ.get(var) or ""
        if len(value) >= 6:
            text = text.replace(value, "[REDACTED]")
    return text


def _leaks(e: BaseException) -> bool:
    """Whether the message of `e`, or of an exception it was raised from, shows a secret."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if redact(str(cur)) != str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class P2MGroup(click.Group):
    """Turns P2MError into one line on stderr and exit code 1 (re-raised under P2M_RAISE_ERRORS=1).

    No message shows a secret: the API key is masked in P2MErrors, and any other error whose message
    (or cause) holds it is replaced by a masked one without the chain.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except P2MError as e:
            if os.environ.get("P2M_RAISE_ERRORS") == "1" and not _leaks(e):
                raise
            raise click.ClickException(redact(str(e))) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            if _leaks(e):
                raise click.ClickException(f"{type(e).__name__}: {redact(str(e))}") from None
            raise


@click.group(cls=P2MGroup)
@click.version_option(package_name="p2m")
def cli() -> None:
    """p2m: turn a task description with a few examples into a small, deployable model."""


@cli.command()
@click.argument("prompt")
@click.option("--llm", "backend", default="embedded", envvar="P2M_LLM", show_default=True,
              help="LLM backend: 'embedded' (llama.cpp, offline) or 'openai' (any OpenAI-compatible endpoint).")
@click.option("-m", "--model", envvar="P2M_MODEL", help="Model name for --llm openai, or a .gguf file for --llm embedded.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", help="Base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp).")
@click.option("--hub", "hubs", multiple=True, type=click.Path(path_type=Path), help="A folder of datasets to search (repeatable).")
@click.option("--test", "test_path", type=click.Path(path_type=Path), help="Labelled JSONL (input, output) to evaluate on.")
@click.option("--out", default=Path("runs"), type=click.Path(path_type=Path), show_default=True, help="Where run folders go.")
@click.option("--budget", default="", help="Limits, e.g. 'steps=12,per_label=40,epochs=3,retrieved=1000'.")
@click.option("--planner", type=click.Choice(["auto", "rules", "llm"]), default="auto", show_default=True,
              help="Who picks the next step: rules, the LLM, or auto (LLM for API models, rules for the small embedded one).")
@click.option("--student", help="A local encoder folder to fine-tune instead of searching for one.")
@click.option("--seed", default=0, show_default=True, help="Seed for sampling, splits and training.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def build(prompt: str, backend: str, model: str | None, base_url: str | None, hubs: tuple[Path, ...],
          test_path: Path | None, out: Path, budget: str, planner: str, student: str | None, seed: int,
          as_json: bool) -> None:
    """Build a model for PROMPT (a prompt file, or the prompt text): instruction plus input=/output= demos."""
    _offline_defaults()
    from agent.budget import Budget
    from p2m_engine.task import parse_task, read_prompt

    limits = Budget.parse(budget)
    spec = parse_task(read_prompt(prompt))
    if spec.task_type != "classification":
        raise P2MError(f"This looks like a {spec.task_type} task; this version of p2m trains classifiers only "
                       "(outputs drawn from a small label set). Generation students are planned.")
    for hub in hubs:
        if not hub.is_dir():
            raise P2MError(f"--hub {hub}: no such folder.")
    if test_path is not None and not test_path.is_file():
        raise P2MError(f"--test {test_path}: no such file.")
    if backend not in ("embedded", "openai"):
        raise P2MError(f"Unknown --llm backend {backend!r}; use 'embedded' or 'openai'.")
    from agent.build import build_model

    summary = build_model(spec, prompt, backend=backend, model=model, base_url=base_url, hubs=list(hubs),
                                test_path=test_path, out=out, limits=limits, planner=planner, student=student,
                                seed=seed, quiet=as_json)
    if as_json:
        click.echo(json.dumps(summary, indent=2))


def _command_line(ctx: click.Context) -> str:
    """The command as a user would type it, rebuilt from the parsed parameters (for result files)."""
    parts = ["p2m", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(param, click.Argument):
            parts.append(str(value))
        elif value is True:
            parts.append(param.opts[-1])
        elif isinstance(value, tuple):
            parts += [f"{param.opts[-1]}={v}" for v in value]
        elif value not in (None, "", False) and value != param.default:
            parts.append(f"{param.opts[-1]}={value}")
    return " ".join(parts)


@cli.command()
@click.argument("suite", type=click.Path(path_type=Path))
@click.option("--hub", "hubs", multiple=True, type=click.Path(path_type=Path), help="Dataset hub folders for the p2m builds.")
@click.option("--llm", "backend", default="embedded", envvar="P2M_LLM", show_default=True, help="LLM backend, as for build.")
@click.option("-m", "--model", envvar="P2M_MODEL", help="Model name (openai) or .gguf file (embedded).")
@click.option("--base-url", envvar="OPENAI_BASE_URL", help="Base URL of an OpenAI-compatible server.")
@click.option("--budget", default="", help="Limits of each build, as for build.")
@click.option("--out", default=Path("benchmarks/results/latest"), type=click.Path(path_type=Path), show_default=True,
              help="Folder of results.json / results.md (a rerun skips what is already there).")
@click.option("--tasks", default="", help="Comma-separated task names (default: all).")
@click.option("--systems", default="p2m,teacher,trivial,gold", show_default=True,
              help="Systems to run; ablations: generated_only, retrieved_only.")
@click.option("--test-file", default="test.jsonl", show_default=True, help="Name of the test file in each task folder.")
@click.option("--student", help="A local encoder folder to use as the student base.")
@click.option("--teacher-limit", type=int, help="Score the teacher on the first N test examples only.")
@click.option("--gold-limit", default=2000, show_default=True, help="Real training examples for the gold bound.")
@click.option("--exclude-own", is_flag=True, help="Hide each task's own dataset folder from the hub (the task as unseen).")
def bench(suite: Path, hubs: tuple[Path, ...], backend: str, model: str | None, base_url: str | None, budget: str,
          out: Path, tasks: str, systems: str, test_file: str, student: str | None, teacher_limit: int | None,
          gold_limit: int, exclude_own: bool) -> None:
    """Benchmark p2m on every task folder of SUITE (prompt.txt + test file) against baselines."""
    _offline_defaults()
    from agent.bench import check_systems, run_bench
    from agent.budget import Budget
    from agent.llms import LLMSettings
    from p2m_engine.bench import markdown_table

    limits = Budget.parse(budget)
    if not suite.is_dir():
        raise P2MError(f"No suite folder at {suite}.")
    chosen = check_systems([s.strip() for s in systems.split(",") if s.strip()])
    settings = LLMSettings(backend=backend, model=model, base_url=base_url,
                           api_key=os.environ.get("OPENAI_API_KEY") if backend == "openai" else None)
    command = _command_line(click.get_current_context())
    data = run_bench(suite, hubs=list(hubs), settings=settings, limits=limits, out=out,
                     tasks=[t for t in tasks.split(",") if t] or None, systems=chosen, student=student,
                     teacher_limit=teacher_limit, gold_limit=gold_limit, command=command, exclude_own=exclude_own,
                     test_name=test_file)
    click.echo(markdown_table(data))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--file", "jsonl", type=click.Path(path_type=Path), help="A JSONL file with an `input` field per line.")
def predict(run: Path, texts: tuple[str, ...], jsonl: Path | None) -> None:
    """Label TEXTS (or the inputs of --file) with the model of RUN (a run folder or its model folder)."""
    _offline_defaults()
    from p2m_engine.evaluate import predict as predict_labels
    from p2m_engine.runs import read_jsonl

    model_dir = run / "model" if (run / "model" / "config.json").is_file() else run
    if not (model_dir / "config.json").is_file():
        raise P2MError(f"No trained model in {run}.")
    inputs = list(texts) + ([str(r.get("input", "")) for r in read_jsonl(jsonl)] if jsonl else [])
    if not inputs:
        raise P2MError("Nothing to predict: give TEXTS or --file.")
    for text, (label, prob) in zip(inputs, predict_labels(model_dir, inputs)):
        click.echo(json.dumps({"input": text, "label": label, "probability": round(prob, 4)}, ensure_ascii=False))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the raw events as JSON lines.")
def trace(run: Path, as_json: bool) -> None:
    """Show the decision trace of RUN: every decision with its reason, every tool call with its result."""
    from agent.trace import read_trace

    events = read_trace(run)
    if not events:
        raise P2MError(f"No trace in {run}.")
    if as_json:
        for e in events:
            click.echo(json.dumps(e, ensure_ascii=False))
        return
    from agent.ui import print_trace

    print_trace(events)


def main() -> None:  # pragma: no cover
    cli(prog_name="p2m")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
