"""One build from the command line: make the run folder, open the LLM, run the graph, write the results;
or continue an interrupted build from its run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from agent.budget import Budget, Targets
from agent.chat import make_converse
from agent.context import Context
from agent.llms import LLMSettings, open_llm
from agent.policy import MIN_REAL_HELD_OUT, REAL_SPLITS, measured_on, score_measure
from agent.runner import read_checkpoint, run_build
from agent.trace import TraceWriter
from agent.ui import BuildDisplay
from p2m_engine import students
from p2m_engine.students.card import write_model_card
from p2m_engine.data.data_card import write_data_card
from p2m_engine.errors import LLMError, P2MError
from p2m_engine.data.datasets import load_examples, scan_hub
from p2m_engine.data.labelling import LabelConfig
from p2m_engine.data.unlabelled import read_unlabelled
from p2m_engine.runs import Run, check_home
from p2m_engine.data.synth import SynthConfig
from p2m_engine.eval.teacher_check import check_teacher
from p2m_engine.eval.iteration import held_out
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import MAIN_METRIC, TaskSpec

# Exit codes of `p2m build` and `p2m resume`.
EXIT_OK = 0
"""A model was built and met the target (or no target was set)."""
EXIT_ERROR = 1
"""An error stopped the build (one line on stderr)."""
EXIT_BELOW_TARGET = 2
"""The build finished below the target, or without a model."""
EXIT_DECLINED = 3
"""In a chat, the user refused the plan (or input ended before a yes): nothing was built."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a build needs besides the task: what config.json records (and the key, which it does not)."""

    llm: LLMSettings
    budget: Budget
    planner: str
    hubs: list[Path]
    test_path: Path | None
    base_model: str | None
    """The model folder the user chose to fine-tune (--base-model); None: search_models picks one."""
    synth: SynthConfig
    train: TrainConfig
    seed: int
    catalog: Path | None = None
    """A folder of the offline Hugging Face dataset catalog, searched beside the hub (--catalog)."""
    unlabelled: Path | None = None
    """The user's file of the task's own inputs without labels (--unlabelled)."""
    labelling: LabelConfig = dataclasses.field(default_factory=LabelConfig)
    """How hub text is chosen and labelled (its counts and seed are set from the budget when a build runs)."""

    def to_config(self, prompt: str) -> dict[str, Any]:
        """The JSON of config.json; paths are absolute, so that a resume works from any folder."""
        base_model = self.base_model
        if base_model and Path(base_model).exists():
            base_model = str(Path(base_model).resolve())
        llm = self.llm.describe()
        if llm.get("model") and str(llm["model"]).endswith(".gguf") and Path(llm["model"]).is_file():
            llm["model"] = str(Path(llm["model"]).resolve())
        return {
            "prompt": prompt if len(prompt) < 300 else prompt[:300] + "...", "llm": llm,
            "planner": self.planner, "hub": [str(h.resolve()) for h in self.hubs],
            "test": str(self.test_path.resolve()) if self.test_path else None, "budget": self.budget.to_dict(),
            "synth": dataclasses.asdict(self.synth), "train": dataclasses.asdict(self.train), "base_model": base_model,
            "seed": self.seed, "catalog": str(self.catalog.resolve()) if self.catalog else None,
            "unlabelled": str(self.unlabelled.resolve()) if self.unlabelled else None,
            "labelling": dataclasses.asdict(self.labelling),
        }


def _tool_arguments() -> dict[str, dict[str, Any]]:
    """What the planner LLM may set: the build tools' own arguments."""
    from agent.planner import tool_arguments
    from tools import TOOLS

    return tool_arguments(TOOLS)


def _known(cls: Any, values: dict[str, Any]) -> Any:
    """A dataclass from recorded values, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (values or {}).items() if k in names})


def _api_key(backend: str) -> str | None:
    return os.environ.get("OPENAI_API_KEY") if backend == "openai" else None


def settings_from_config(cfg: dict[str, Any]) -> Settings:
    """Rebuild a run's settings from its config.json; the API key comes from the environment again.

    Raises:
        P2MError: the config lacks what a build needs.
    """
    try:
        llm = cfg["llm"]
        return Settings(
            llm=LLMSettings(backend=llm["backend"], model=llm.get("model"), base_url=llm.get("base_url"),
                            api_key=_api_key(llm["backend"])),
            budget=Budget.from_dict(cfg["budget"]), planner=cfg["planner"], hubs=[Path(h) for h in cfg.get("hub") or []],
            test_path=Path(cfg["test"]) if cfg.get("test") else None, base_model=cfg.get("base_model", cfg.get("student")),  # "student": before the word was unified
            synth=_known(SynthConfig, cfg["synth"]), train=_known(TrainConfig, cfg["train"]), seed=int(cfg.get("seed", 0)),
            catalog=Path(cfg["catalog"]) if cfg.get("catalog") else None,
            unlabelled=Path(cfg["unlabelled"]) if cfg.get("unlabelled") else None,
            labelling=_known(LabelConfig, cfg.get("labelling") or {}),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise P2MError(f"The run's config.json is incomplete ({type(e).__name__}: {e}); it cannot be resumed.") from e


# Parts of the data and training recipe a build can switch off (`--off`), to measure what each one buys.
SWITCHES = {
    "labelling": "label real hub text with the judges (label_texts)",
    "label_queries": "hub text also taken near the labels no demonstration shows, not only near the demonstrations",
    "soft_labels": "the frozen-encoder student on the judges' soft labels (else the fine-tuned one on hard labels)",
    "contrastive": "the encoder tuned on the judges' most confident texts before the frozen-encoder student's head",
    "consistency": "the label consistency check: judged rows the frozen-encoder student, trained on the other folds, "
                   "labels otherwise are dropped before its head is trained",
    "nearness": "the frozen-encoder student's hub texts weighted by their nearness to the demonstrations",
    "written": "inputs the teacher writes like the demonstrations (no labels), labelled by the judges with hub text",
    "prior": "the label prior correction of the classifier",
    "attributes": "topic conditioning of generation batches",
    "rival": "a second student chosen on validation: the frozen-encoder rival of a fine-tuned classifier, or the "
             "teacher's own weights with LoRA for generation",
    "pair": "two-field inputs encoded as a sentence pair",
    "cloze": "cloze questions from hub passages, trained on by the extractive-QA student",
}


# Generation requests in flight together when --concurrency is not given: the embedded server has one slot.
DEFAULT_CONCURRENCY = {"embedded": 1, "openai": 8}


def build_configs(off: Iterable[str], budget: Budget, seed: int,
                  concurrency: int = 1) -> tuple[Budget, SynthConfig, TrainConfig, LabelConfig]:
    """The budget and the generation and training settings of a build: the `off` parts switched off, and
    `concurrency` generation requests in flight together.

    Raises:
        P2MError: an unknown part.
    """
    off = set(off)
    if unknown := off - set(SWITCHES):
        raise P2MError(f"--off: unknown part(s) {sorted(unknown)}; choose from {', '.join(SWITCHES)}.")
    budget = budget.replace(labelled=0) if "labelling" in off else budget
    budget = budget.replace(written=0) if "written" in off else budget
    targets = budget.targets
    synth = SynthConfig(per_label=targets.per_label, seed=seed, attributes="attributes" not in off, concurrency=concurrency)
    flags = {"soft": "soft_labels" not in off, **{k: k not in off for k in ("prior", "rival", "pair")}}
    train = TrainConfig(epochs=targets.epochs, seed=seed, teacher_steps=_teacher_steps(targets), **flags,
                        **{k: 0 for k in ("cloze", "contrastive", "consistency", "nearness") if k in off})
    return budget, synth, train, LabelConfig(label_queries="label_queries" not in off)


def _teacher_steps(targets: Targets) -> int:
    """The teacher-born rival's steps (generation and extractive QA): the budget's, else RIVAL_MAX_STEPS with a GPU
    and RIVAL_CPU_STEPS without (on 2 cores 40 steps from the 0.5B teacher took about 27 minutes on MCoNaLa's 258
    rows, 20 about 8 on temporal's 224, and 20 of QA's longer inputs, 8 rows a step, 387 s on SQuAD's)."""
    if targets.teacher_steps is not None:
        return targets.teacher_steps
    import torch

    from p2m_engine.students.student_choice import RIVAL_CPU_STEPS, RIVAL_MAX_STEPS

    return RIVAL_MAX_STEPS if torch.cuda.is_available() else RIVAL_CPU_STEPS


def build_model(spec: TaskSpec, prompt: str, *, backend: str, model: str | None, base_url: str | None,
                hubs: list[Path], test_path: Path | None, out: Path, budget: Budget, planner: str,
                base_model: str | None, seed: int, quiet: bool = False, chat: bool = False,
                catalog: Path | None = None, confirm: Callable[[str], bool] | None = None,
                off: Iterable[str] = (), concurrency: int | None = None,
                unlabelled: Path | None = None) -> dict[str, Any]:
    """Run one build end to end and return its summary (also written to run/summary.json).

    With `chat`, the agent asks its clarifying questions and the plan in the terminal, and after the build
    answers questions from the trace and takes requests that steer it further.

    Everything that can be checked without the LLM is checked before the run folder is made: local files,
    the cache folder, the key, and the estimate of LLM calls and money (above ASK_ABOVE_CALLS / ASK_ABOVE_USD
    it needs `confirm`; without one, as under --yes, it is refused). A failure after that names the run
    folder and how to resume it, and is the trace's last event.

    Raises:
        BudgetExceededError: the estimate is above the ceiling and was not confirmed.
        P2MError: bad settings, or the build failed.
    """
    _check_local_files(backend, model, base_model)
    if unlabelled is not None:
        read_unlabelled(unlabelled)  # a bad file is refused before anything is made
    check_home()
    if concurrency is not None and concurrency < 1:
        raise P2MError(f"--concurrency must be at least 1, got {concurrency}.")
    budget, synth, train, labelling = build_configs(off, budget, seed, concurrency or DEFAULT_CONCURRENCY.get(backend, 1))
    settings = Settings(
        llm=LLMSettings(backend=backend, model=model, base_url=base_url, api_key=_api_key(backend)), budget=budget,
        planner=planner if planner != "auto" else ("llm" if backend == "openai" else "rules"), hubs=hubs,
        test_path=test_path, base_model=base_model, synth=synth, train=train, seed=seed, catalog=catalog,
        unlabelled=unlabelled, labelling=labelling)
    settings.llm.check()
    _check_estimate(spec, settings, confirm)
    run = Run.create(out, spec.instruction)
    run.write_json("config.json", settings.to_config(prompt))
    record_task(run, spec, budget.targets)
    with exclusive(run), _failure_recorded(run, settings):
        return _drive(run, spec, settings, quiet=quiet, resume=False, chat=chat)


def record_task(run: Run, spec: TaskSpec, targets: Targets) -> float:
    """Make `spec` the run's task in its records, and return the target its metric implies.

    task.json gets the task; config.json its type, main metric and target (the user's `target=`, else the
    metric's default). Called before a build starts and again after every edit in chat, so that `p2m train`,
    `p2m resume` and the summary read the task the build actually ran.
    """
    metric = MAIN_METRIC[spec.task_type]
    target = targets.target_for(metric)
    run.write_json("task.json", spec.to_dict())
    config = run.read_json("config.json") if (run.dir / "config.json").is_file() else {}
    run.write_json("config.json", {**config, "task_type": spec.task_type, "metric": metric, "target": target})
    return target


def _check_estimate(spec: TaskSpec, settings: Settings, confirm: Callable[[str], bool] | None) -> None:
    """Ask before a build whose estimate is above the ceiling, unless the budget bounds it explicitly.

    Raises:
        BudgetExceededError: above the ceiling and not confirmed (or nobody to ask).
    """
    from agent.budget import ASK_ABOVE_CALLS, ASK_ABOVE_USD
    from agent.llms import DEFAULT_OPENAI_MODEL
    from p2m_engine.errors import BudgetExceededError
    from p2m_engine.llm.pricing import parse_prices

    llm = settings.llm
    if llm.backend == "embedded":
        model, url = "embedded", "http://127.0.0.1"  # the local llama.cpp server: free
    else:
        model, url = llm.model or DEFAULT_OPENAI_MODEL, llm.base_url
    est = estimate_cost(spec, settings, model, url, parse_prices(os.environ.get("P2M_PRICES", "")))
    limits = settings.budget.limits
    too_many = limits.llm_calls is None and est.calls > ASK_ABOVE_CALLS
    too_dear = limits.usd is None and est.usd is not None and est.usd > ASK_ABOVE_USD
    if not (too_many or too_dear):
        return
    why = (f"This build may make {est.describe()}, above the {ASK_ABOVE_CALLS:,} calls or "
           f"${ASK_ABOVE_USD:.2f} p2m asks about.")
    if confirm is not None and confirm(f"{why} Build anyway?"):
        return
    raise BudgetExceededError(f"{why} Not started: lower --budget per_label or iterations, or bound it with "
                              "--budget llm_calls=N (and usd=N).")


@contextlib.contextmanager
def _failure_recorded(run: Run, settings: Settings) -> Iterator[None]:
    """The error that stops a build becomes its trace's last event, and its message names the run folder."""
    try:
        yield
    except BaseException as e:
        kind = "interrupted" if isinstance(e, KeyboardInterrupt) else "build_failed"
        TraceWriter(run.dir, run.id, secrets=[settings.llm.api_key or ""]).write(
            [{"kind": "error", "node": "build", "name": kind, "error": f"{type(e).__name__}: {e}"[:2000]}])
        if isinstance(e, P2MError):
            e.args = (f"{e} The run folder {run.dir} is kept; continue it with `p2m resume {run.dir}`.",)
        raise


def _check_local_files(backend: str, model: str | None, base_model: str | None) -> None:
    """Refuse a --base-model folder, an embedded --model .gguf or packaged name that does not exist before any run
    folder is made.

    Raises:
        ModelError: the base model folder is missing.
        LLMError: the .gguf file is missing, or the name is no packaged model.
    """
    from p2m_engine.errors import LLMError, ModelError
    from p2m_engine.llm.embedded import PACKAGED

    if base_model and not Path(base_model).is_dir():
        raise ModelError(f"--base-model {base_model}: no such model folder. Give a local model folder "
                         "(config.json + weights), or leave --base-model out to let p2m choose.")
    if backend == "embedded" and model and model.endswith(".gguf") and not Path(model).is_file():
        raise LLMError(f"--model {model}: no such .gguf file.")
    if backend == "embedded" and model and not model.endswith(".gguf") and model not in PACKAGED:
        raise LLMError(f"--model {model}: not a .gguf file, nor a packaged model ({', '.join(PACKAGED)}).")


@contextlib.contextmanager
def exclusive(run: Run) -> Iterator[None]:
    """Hold the run folder for this process: a second build or resume of it fails instead of interleaving.

    The lock belongs to the process, so the system releases it when the process dies, even by kill -9.

    Raises:
        P2MError: another process holds the run.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with (run.dir / ".lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise P2MError(f"{run.dir} is in use by another p2m process; wait for it to end or stop it first.") from None
        yield


def open_run(run_dir: Path) -> tuple[Run, TaskSpec, Settings]:
    """The run folder of an earlier build, its task and its settings.

    Raises:
        P2MError: `run_dir` is not a p2m run folder.
    """
    # No checkpoints yet (the build stopped before its first step): the resumed build starts from the beginning.
    missing = [n for n in ("config.json", "task.json") if not (run_dir / n).is_file()]
    if not run_dir.is_dir() or missing:
        raise P2MError(f"{run_dir} is not a p2m run folder (no {', '.join(missing) or 'folder'}); "
                       "give the folder `p2m build` printed, e.g. runs/20250101-120000-...")
    run = Run(run_dir)
    try:
        spec = TaskSpec.from_dict(run.read_json("task.json"))
        cfg = run.read_json("config.json")
    except (ValueError, KeyError, TypeError) as e:
        raise P2MError(f"{run_dir}: unreadable task.json or config.json ({e}).") from e
    return run, spec, settings_from_config(cfg)


def resume_model(run_dir: Path, *, quiet: bool = False, base_url: str | None = None,
                 chat: bool = False) -> dict[str, Any] | None:
    """Continue the build of `run_dir` from its last checkpoint and return its summary.

    Args:
        run_dir: the run folder.
        quiet: no progress display.
        base_url: the LLM endpoint, when it moved since the build (cached answers stay valid).
        chat: continue in conversation (`p2m chat RUN`): a finished build takes questions and requests.

    Returns:
        The summary, or None, doing nothing, when the build had already finished.

    Raises:
        P2MError: not a run folder, or the build fails again.
    """
    run, spec, settings = open_run(run_dir)
    if base_url:
        # The same server at a new address: its answers cached under the old one stay valid.
        old = settings.llm
        settings = dataclasses.replace(settings, llm=dataclasses.replace(
            old, base_url=base_url, cache_endpoint=old.cache_endpoint or old.base_url or "https://api.openai.com/v1"))
    check_home()
    settings.llm.check()
    with exclusive(run):
        if not chat and read_checkpoint(run).finished and (run.dir / "summary.json").is_file():
            return None
        with _failure_recorded(run, settings):
            return _drive(run, spec, settings, quiet=quiet, resume=True, chat=chat)


def _drive(run: Run, spec: TaskSpec, settings: Settings, *, quiet: bool, resume: bool,
           chat: bool = False) -> dict[str, Any]:
    """Open the LLM, run (or continue) the graph, and write the summary and model card."""
    started = time.monotonic()
    limits, targets = settings.budget.limits, settings.budget.targets
    target = targets.target_for(MAIN_METRIC[spec.task_type])
    display = BuildDisplay(run, quiet=quiet, verb="resume" if resume else "build")
    trace = TraceWriter(run.dir, run.id, secrets=[settings.llm.api_key or ""])
    with open_llm(settings.llm, run.dir / "logs") as llm, display:
        ctx = Context(run=run, llm=llm, hub_dirs=settings.hubs, catalog_dir=settings.catalog,
                      test_path=settings.test_path, base_model=settings.base_model, synth=settings.synth, train=settings.train, max_retrieved=targets.retrieved,
                      labelling=dataclasses.replace(settings.labelling, texts=targets.labelled, written=targets.written,
                                                    seed=settings.seed,
                                                    concurrency=settings.synth.concurrency),
                      unlabelled=settings.unlabelled, progress=display.progress, planner=settings.planner,
                      max_steps=limits.steps, interactive=chat, target=target,
                      max_iterations=limits.iterations, max_llm_calls=limits.llm_calls, max_usd=limits.usd,
                      record_task=lambda edited: record_task(run, edited, targets), tool_arguments=_tool_arguments(),
                      teacher_weights=llm.weights)
        if not resume:
            est = estimate_cost(spec, settings, llm.model, llm.base_url, getattr(llm, "prices", None))
            display.note(f"estimate: {est.describe()}")
            trace.write([{"kind": "estimate", "node": "build", "step": 0, "name": "estimate", "calls": est.calls,
                          "tokens": est.tokens, "cost_usd": est.usd}])
            warnings = [f"--hub {hub} holds no dataset folder (a folder with dataset_info.json and train.jsonl)"
                        for hub in settings.hubs if not scan_hub([hub])]
            for w in warnings:
                display.warn(w)
            trace.write([{"kind": "warning", "node": "build", "step": 0, "name": "empty_hub", "message": w}
                         for w in warnings])
        converse = make_converse(run.dir, llm, display.read, display.show, ctx) if chat else None
        state = run_build(spec, ctx, trace, on_update=display.update, resume=resume,
                          ask=display.ask if chat else None, converse=converse)
        checked = None if state.get("declined") else teacher_check(run, state, settings, llm, ctx, trace)
        usage = llm.usage.to_dict()
        teacher = llm.model
        spent = llm.cost_usd()
    if state.get("declined"):
        summary = {"run": str(run.dir), "finish_reason": state.get("finish_reason"), "declined": state["declined"],
                   "model_dir": None, "met_target": False, "llm_usage": usage, "cost_usd": spent, "task": state.get("task"),
                   "wall_s": round(time.monotonic() - started, 1), "resumed": resume}
        run.write_json("summary.json", summary)
        return summary
    target = ctx.target  # a chat may have changed the task, and with it the metric and its target
    score = state.get("score")
    split, n = score_measure(state)
    summary = {
        "run": str(run.dir), "finish_reason": state.get("finish_reason"), "score": score,
        "score_split": split, "score_n": n, "measured_on": measured_on(split, n),
        "target": target, "met_target": met_target(state.get("model_dir"), score, target, split, n)
        and (checked or {}).get("student_matches", True), "teacher_check": checked,
        "metrics": state.get("metrics"), "dataset": state.get("dataset"), "retrieved": state.get("retrieved", 0),
        "generated": state.get("generated", 0), "per_label": state.get("per_label", {}),
        "base_model": students.kept_base_model(state.get("model_dir"), state.get("base_model_name"), teacher),
        "model_dir": state.get("model_dir"), "val_score": state.get("val_score"), "steps": state.get("steps", 0),
        "tried": [{"name": t.get("name"), "ok": t.get("ok")} for t in state.get("trace", []) if t.get("kind") == "tool"],
        "llm_usage": usage, "cost_usd": spent, "task": state.get("task"), "teacher": teacher, "wall_s": round(time.monotonic() - started, 1),
        "resumed": resume,
        "decision_split": state.get("decision_split"), "best_iteration": state.get("best_iteration"),
        "iterations": [{k: h.get(k) for k in ("iteration", "decision_score", "score", "weak_labels")}
                       for h in state.get("history", [])],
    }
    dropped: Counter[str] = Counter()
    skipped, malformed = 0, []
    for t in state.get("trace", []):
        dropped.update(t.get("dropped") or {})
        if t.get("name") == "search_datasets" and t.get("skipped_lines"):
            skipped, malformed = int(t["skipped_lines"]), list(t.get("malformed_lines") or [])  # the last search counts
    summary["skipped_lines"] = skipped
    write_data_card(run.dir, TaskSpec.from_dict(state["task"]), dataset=state.get("dataset"), dropped=dict(dropped),
                    skipped=skipped, malformed=malformed)
    if state.get("model_dir"):
        write_model_card(Path(state["model_dir"]), TaskSpec.from_dict(state["task"]), summary)
    run.write_json("summary.json", summary)
    display.summary(summary)
    return summary


def teacher_check(run: Run, state: dict[str, Any], settings: Settings, llm: Any, ctx: Context,
                  trace: TraceWriter) -> dict[str, Any] | None:
    """Score the student and the teacher on the same real held-out rows (dev, else the test file) for a
    generation or QA build (p2m_engine.eval.teacher_check), record it in the trace, and return it for the summary
    (a student below its teacher does not meet the target). None when the build has no such check."""
    spec = TaskSpec.from_dict(state["task"])
    limit = settings.budget.limits.teacher_check
    if spec.task_type == "classification" or not limit or not state.get("model_dir"):
        return None
    if ctx.max_llm_calls is not None:
        limit = min(limit, max(0, ctx.max_llm_calls - llm.usage.calls))
    # Without the demonstrations: the student trained on them and the teacher sees them in its prompt.
    rows, split = held_out(load_examples(run.data("dev")) if run.data("dev").is_file() else [], spec.examples), "dev"
    if len(rows) < MIN_REAL_HELD_OUT and settings.test_path:
        rows, split = held_out(load_examples(settings.test_path), spec.examples), "test"
    record: dict[str, Any] = {"kind": "check", "node": "build", "step": state.get("steps", 0), "name": "teacher_check"}
    if min(limit, len(rows)) < MIN_REAL_HELD_OUT:
        why = (f"the llm_calls budget leaves {limit} teacher answers" if limit < MIN_REAL_HELD_OUT
               else f"only {len(rows)} real held-out rows")
        result: dict[str, Any] = {"skipped": f"{why} (fewer than {MIN_REAL_HELD_OUT}): student and teacher not compared"}
    elif ctx.max_usd is not None and (llm.cost_usd() or 0) >= ctx.max_usd:
        result = {"skipped": f"the ${ctx.max_usd} budget is spent: student and teacher not compared"}
    else:
        try:
            check = check_teacher(spec, llm, Path(state["model_dir"]), rows, split, limit,
                                  progress=ctx.report("teacher_check"))
            result = {**check.to_dict(), "summary": check.describe()}
        except LLMError as e:
            result = {"skipped": f"the teacher could not answer ({e}): student and teacher not compared"}
    trace.write([{**record, **result}])
    return result


def met_target(model_dir: str | None, score: float | None, target: float | None, split: str | None = "test",
               n: int = MIN_REAL_HELD_OUT) -> bool:
    """Whether a build delivered: a model and, with a target, a score at or above it on at least
    MIN_REAL_HELD_OUT real held-out rows (a score on the demonstrations never confirms a target)."""
    if not model_dir:
        return False
    if target is None:
        return True
    if split not in REAL_SPLITS or n < MIN_REAL_HELD_OUT:
        return False
    return score is not None and score >= target


def estimate_cost(spec: TaskSpec, settings: Settings, model: str, base_url: str | None,
                  prices: dict[str, tuple[float, float]] | None) -> Any:
    """The most this build may spend on LLM calls, from its budget and the price of `model` at `base_url`."""
    from p2m_engine.llm.pricing import estimate

    limits = settings.budget.limits
    return estimate(len(spec.labels), settings.synth.per_label, settings.synth.batch_size, limits.iterations,
                    limits.llm_calls, model, base_url, prices,
                    labelled=settings.budget.targets.labelled if settings.hubs else 0, n_demos=len(spec.examples),
                    written=settings.budget.targets.written if settings.hubs else 0)


def exit_code(summary: dict[str, Any]) -> int:
    """0 when the build met its target (or had none), 2 when it finished below it or without a model, 3 when the
    user declined the plan in a chat."""
    if summary.get("declined"):
        return EXIT_DECLINED
    return EXIT_OK if summary.get("met_target") else EXIT_BELOW_TARGET
