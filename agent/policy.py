"""The guard rails of the state machine: which actions are valid now, when the build must stop, and what
the rules (the heuristic advisor) would choose.

A build is a pipeline (search data, search models, generate, train, evaluate) followed by a loop while
the validation score lags the target: targeted generation for the weak labels, or retraining with more
epochs when the student is under-trained, then train and evaluate again. Every score the policy reads is
measured on the decision split (real dev data held out from the retrieved dataset, else the validation rows
held back from training, else the demonstrations), never on the test data.
"""

from __future__ import annotations

from typing import Any

from agent.context import Context
from tools import TOOLS, summary
from p2m_engine.types import generation_total

# What the planner may choose: every tool, described by its own docstring (adding a tool touches tools/ only),
# then stopping.
ACTIONS: dict[str, str] = {**{t.name: summary(t) for t in TOOLS}, "finish": "stop and export the best model"}
# The rules take the first allowed action in this order (the tools' order) while building the first model.
ORDER = list(ACTIONS)
MAX_GENERATE_CALLS = 3


def per_label_target(state: dict[str, Any], ctx: Context) -> int:
    """Generated examples wanted per label: the run's setting, raised each time a chat asks for more."""
    return ctx.synth.per_label + int(state.get("extra_per_label", 0)) * max(5, ctx.synth.per_label // 2)


def generation_target(state: dict[str, Any], ctx: Context) -> int:
    """Generated examples wanted: per label, what the real rows (retrieved, teacher-labelled) leave short of the
    per-label target; a task without labels (generation, extractive QA) gets a total target."""
    labels = state["task"].get("labels") or ()
    if not labels:  # hub inputs the teacher answered (label_texts) count towards the total
        return max(0, generation_total(per_label_target(state, ctx)) - int(state.get("labelled", 0)))
    real = state.get("real_per_label") or {}
    return sum(max(0, per_label_target(state, ctx) - int(real.get(label, 0))) for label in labels)


def _data(state: dict[str, Any]) -> int:
    return state.get("retrieved", 0) + state.get("labelled", 0) + state.get("generated", 0)


def llm_calls_left(ctx: Context) -> bool:
    """Whether the call and money budgets leave room for another LLM action (checked before it runs)."""
    if ctx.llm is None:
        return True
    if ctx.max_llm_calls is not None and ctx.llm.usage.calls >= ctx.max_llm_calls:
        return False
    if ctx.max_usd is not None:
        spent = ctx.llm.cost_usd()
        # An unknown price cannot be checked against a money budget: refuse rather than overspend.
        return spent is not None and spent < ctx.max_usd
    return True


def decision_scores(state: dict[str, Any]) -> list[float]:
    """The decision-split score of every evaluated iteration, in order."""
    return [h["decision_score"] for h in state.get("history", [])]


def _measure(state: dict[str, Any]) -> str:
    """What the decision scores measure, e.g. "dev accuracy"."""
    history = state.get("history") or [{}]
    return f"{state.get('decision_split')} {history[-1].get('metric', 'accuracy')}"


# Fewer real held-out rows than this cannot confirm a target (3 demonstrations at 1.0 say nothing).
MIN_REAL_HELD_OUT = 30
# The splits that hold real data the student never trained on.
REAL_SPLITS = ("test", "dev")


def score_measure(state: dict[str, Any]) -> tuple[str | None, int]:
    """The split the reported score was measured on, and its number of rows."""
    best = next((h for h in state.get("history", []) if h.get("iteration") == state.get("best_iteration")), None)
    split = (best or {}).get("score_split")
    report = (state.get("metrics") or {}).get(split) if split else None
    return split, int(report.get("n", 0)) if isinstance(report, dict) else 0


def measured_on(split: str | None, n: int) -> str:
    """What the reported score means, in words (summary, model card, trace)."""
    if split is None:
        return "not measured"
    if split in REAL_SPLITS and n >= MIN_REAL_HELD_OUT:
        return f"{n} real held-out rows ({split})"
    if split in REAL_SPLITS:
        return f"only {n} real held-out rows ({split}): too few to trust"
    return (f"only the {n} demonstrations of the prompt: no real held-out data, so the score cannot be trusted "
            "(give --test FILE or a hub with a fitting dataset)")


def plateaued(scores: list[float], min_gain: float) -> bool:
    """True when the last two iterations both failed to beat the best before them by `min_gain`."""
    return len(scores) >= 3 and max(scores[-2:]) < max(scores[:-2]) + min_gain


def stop_reason(state: dict[str, Any], ctx: Context) -> str | None:
    """Why the build must stop now that its model is evaluated (target met, plateau, budget), or None.

    Only the decision split's scores are read; the test score never is.
    """
    if not state.get("evaluated"):
        return None
    scores = decision_scores(state)
    if not scores:
        return "model evaluated"
    measure, best = _measure(state), state.get("best_score")
    if best is not None and best >= ctx.target:
        n = (state.get("history") or [{}])[-1].get("decision_n") or 0
        if state.get("decision_split") == "dev" and n >= MIN_REAL_HELD_OUT:
            return f"target met ({measure} {best:.4f} >= {ctx.target})"
        if state.get("decision_split") == "dev":
            return (f"target reached on {measure} {best:.4f} >= {ctx.target}, but on only {n} real rows (fewer than "
                    f"{MIN_REAL_HELD_OUT}): not confirmed")
        # Held-back generated rows or a few demos are not real held-out data: say so rather than claim the target.
        return (f"target reached on {measure} {best:.4f} >= {ctx.target}, not on real held-out data (no dataset "
                "was retrieved to hold a dev split out of): the test score is the real measure")
    if plateaued(scores, ctx.min_gain):
        return (f"plateau ({measure} {', '.join(f'{s:.4f}' for s in scores)}: no gain of {ctx.min_gain} "
                "over two iterations)")
    if len(scores) >= ctx.max_iterations:
        return f"budget: {ctx.max_iterations} iterations (best {measure} {best:.4f} < target {ctx.target})"
    if ctx.max_steps - state.get("steps", 0) < 2:
        return f"budget: {ctx.max_steps} steps (another iteration needs a training and an evaluation)"
    return None


def improving(state: dict[str, Any], ctx: Context) -> bool:
    """The current model is evaluated on the decision split and the loop may go on."""
    return bool(state.get("evaluated") and state.get("history")) and stop_reason(state, ctx) is None


def can_label(state: dict[str, Any], ctx: Context, tried: list[Any]) -> bool:
    """Labelling real hub text makes sense once, after the search: for classification with labelled
    demonstrations and no retrieved dataset (real labelled rows beat text labelled by judges; with them it only
    adds noise); for the other task types with a teacher to answer the texts, in place of pairs it would write
    (a dataset retrieved for them is judged by its fields, not by a probe, and generation runs beside it)."""
    task = state["task"]
    if task.get("task_type") == "classification":
        demos = [e for e in task.get("examples", []) if e.get("output") in (task.get("labels") or ())]
        wanted = not state.get("retrieved")
    else:
        demos = list(task.get("examples", []))
        wanted = ctx.llm is not None and llm_calls_left(ctx)
    return bool(demos and wanted and ctx.hub_dirs and ctx.labelling.texts > 0
                and "search_datasets" in tried and "label_texts" not in tried)


def can_remix(state: dict[str, Any], tried: list[Any]) -> bool:
    """A second search, with a planner's mix of the datasets the first found usable, makes sense before anything
    was trained on the first one's choice (the rules never take it: they keep the search's own choice)."""
    return bool(tried.count("search_datasets") == 1 and state.get("dataset_candidates") and not state.get("model_dir"))


def can_target(state: dict[str, Any], ctx: Context) -> bool:
    """Targeted generation makes sense: weak labels, a teacher, budget for generate + train + evaluate."""
    return bool(improving(state, ctx) and state.get("weak_labels") and ctx.llm is not None and ctx.synth.per_label > 0
                and llm_calls_left(ctx) and ctx.max_steps - state.get("steps", 0) >= 3
                and state.get("targeted_at") != state.get("iteration") and not state.get("targeted_stalled"))


def under_trained(state: dict[str, Any], ctx: Context) -> bool:
    """The student does not even fit its held-back training data: more epochs should help."""
    val = state.get("val_score")
    return val is not None and val == val and val < ctx.target  # val == val: NaN (no validation) is not low


def retrain_epochs(state: dict[str, Any], ctx: Context) -> float:
    """Twice the epochs of the last training, capped."""
    last = float(state.get("epochs") or ctx.train.epochs)
    return min(2 * last, 2 * max(ctx.train.epochs, ctx.train.max_epochs))


def tool_attempts(state: dict[str, Any]) -> list[str]:
    """Every tool call made so far, completed or failed (a checkpoint from before the state counted them: its
    trace's tool records)."""
    if "tried" in state:
        return list(state["tried"])
    return [t.get("name") for t in state.get("trace", []) if t.get("kind") == "tool"]


def allowed_actions(state: dict[str, Any], ctx: Context) -> list[str]:
    """Actions that make sense in `state`: nothing is trained before there is data, nothing evaluated twice,
    and after an evaluation the loop actions only while the target is not met and budget remains."""
    tried = tool_attempts(state)
    allowed = []
    if (ctx.hub_dirs or ctx.catalog_dir) and "search_datasets" not in tried:
        allowed.append("search_datasets")
    if not state.get("base_model") and tried.count("search_models") < 2:
        allowed.append("search_models")
    if can_label(state, ctx, tried):
        allowed.append("label_texts")
    if (ctx.llm is not None and ctx.synth.per_label > 0 and state.get("generated", 0) < generation_target(state, ctx)
            and tried.count("generate_examples") < MAX_GENERATE_CALLS * (1 + int(state.get("extra_per_label", 0)))
            and not state.get("generation_stalled")
            # After the first evaluation, only targeted generation, unless a chat asked for more examples.
            and (not state.get("history") or state.get("extra_per_label")) and llm_calls_left(ctx)):
        allowed.append("generate_examples")
    if can_target(state, ctx):
        allowed.append("generate_targeted_examples")
    if state.get("base_model") and _data(state) > 0 and (_data(state) != state.get("trained_on", 0)
                                                          or improving(state, ctx)):
        allowed.append("train_model")
    if state.get("model_dir") and not state.get("evaluated"):
        allowed.append("evaluate_model")
    if state.get("evaluated"):
        allowed.append("finish")
    if (ctx.hub_dirs or ctx.catalog_dir) and can_remix(state, tried):
        allowed.append("search_datasets")  # last: a step only a planner's mix takes
    return allowed


def rules_choice(allowed: list[str], state: dict[str, Any], ctx: Context) -> tuple[str, str]:
    """The heuristic advisor: (action, reason).

    First the pipeline order (search data, search models, generate, train, evaluate). After an evaluation:
    finish on target, plateau or budget; train on new data; targeted generation when some labels are weak;
    retrain with more epochs when the student is under-trained; otherwise finish.
    """
    if allowed == ["finish"]:
        return "finish", stop_reason(state, ctx) or "model evaluated"
    if not state.get("evaluated") or not state.get("history"):
        searched = "search_datasets" in tool_attempts(state)
        steps = [a for a in allowed if not (a == "search_datasets" and searched)] or allowed
        return min(steps, key=ORDER.index), "next step of the default pipeline"
    split = state.get("decision_split")
    lag = f"best {_measure(state)} {state.get('best_score')} < target {ctx.target}"
    if "train_model" in allowed and _data(state) != state.get("trained_on", 0):
        return "train_model", f"train on the {_data(state) - state.get('trained_on', 0)} new examples"
    if "generate_targeted_examples" in allowed:
        return "generate_targeted_examples", f"{lag}; weak labels on {split}: {', '.join(state['weak_labels'])}"
    if "train_model" in allowed and under_trained(state, ctx):
        return "train_model", (f"{lag}; under-trained (held-back training accuracy {state.get('val_score')}): "
                               f"retrain with {retrain_epochs(state, ctx):g} epochs")
    if state.get("weak_labels") and not llm_calls_left(ctx):
        spent = f"${ctx.max_usd}" if ctx.max_usd is not None else f"{ctx.max_llm_calls} LLM calls"
        return "finish", f"budget: {spent} ({lag})"
    return "finish", f"no improving action left ({lag}; weak labels: {', '.join(state.get('weak_labels') or []) or 'none'})"


def action_args(action: str, state: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The arguments of a chosen action: a retraining on unchanged data gets more epochs; generation after a
    chat asked for more examples gets the raised per-label target."""
    if action == "train_model" and state.get("evaluated") and _data(state) == state.get("trained_on", 0):
        return {"epochs": retrain_epochs(state, ctx)}
    if action == "generate_examples" and state.get("extra_per_label"):
        return {"per_label": per_label_target(state, ctx)}  # a chat asked for more examples
    return {}


# The longest guidance text passed to the teacher; the most topics, and the longest topic.
MAX_GUIDANCE = 200
MAX_TOPICS = 12
MAX_TOPIC_CHARS = 60


def check_args(action: str, given: Any, state: dict[str, Any], ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """The planner's arguments for `action`, clipped to the budget: (arguments, what was clipped: name -> asked).

    Bounds: examples per label between 1 and the run's per-label target (generate_examples) or its per-label
    setting (generate_targeted_examples); epochs between 0.5 and what a retraining may take; guidance cut to
    MAX_GUIDANCE characters.

    Raises:
        ValueError: arguments that cannot be used (not an object, a name the action does not take, a wrong type):
            the call is refused and the rules take the step.
    """
    remix = isinstance(given, dict) and given.get("mix")
    if action == "search_datasets" and "search_datasets" in tool_attempts(state) and not remix:
        raise ValueError("a second search_datasets needs a mix (dataset -> rows) of the usable datasets")
    if given in (None, {}):
        return {}, {}
    if not isinstance(given, dict):
        raise ValueError(f"arguments must be an object, got {type(given).__name__}")
    takes = set(ctx.tool_arguments.get(action, {}))
    if unknown := set(given) - takes:
        raise ValueError(f"{action} takes no argument {sorted(unknown)} (it takes {sorted(takes) or 'none'})")
    bounds: dict[str, tuple[float, float]] = {
        "per_label": (1, per_label_target(state, ctx) if action == "generate_examples" else max(1, ctx.synth.per_label)),
        "epochs": (0.5, 2 * max(ctx.train.epochs, ctx.train.max_epochs)),
    }
    out: dict[str, Any] = {}
    clipped: dict[str, Any] = {}
    for name, value in given.items():
        if name == "mix":
            out[name], asked = check_mix(value, state, ctx)
            if asked:
                clipped[name] = asked
            continue
        if name == "base_model":
            if value not in (state.get("model_candidates") or {}):
                raise ValueError(f"base_model {value!r} is not one the model search found "
                                 f"({', '.join(state.get('model_candidates') or {}) or 'none'})")
            out[name] = value
            continue
        if name == "labels":
            out[name] = check_labels(value, state)
            continue
        if name == "topics":
            out[name], asked = check_topics(value)
            if asked:
                clipped[name] = asked
            continue
        if name == "guidance":
            if not isinstance(value, str):
                raise ValueError(f"guidance must be text, got {value!r}")
            out[name] = " ".join(value.split())[:MAX_GUIDANCE]
            if out[name] != value:
                clipped[name] = value
            continue
        if not _is_number(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
        low, high = bounds[name]
        kept = min(max(value, low), high)
        out[name] = int(kept) if name == "per_label" else float(kept)
        if out[name] != value:
            clipped[name] = value
    return {k: v for k, v in out.items() if v != ""}, clipped


def _is_number(value: Any) -> bool:
    """A JSON number: not a bool, not NaN."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == value


def check_labels(labels: Any, state: dict[str, Any]) -> list[str]:
    """The labels a planner wants examples for, each once, in its order.

    Raises:
        ValueError: not a list of the task's labels (an unknown label, a task without labels), or an empty one.
    """
    known = list(state["task"].get("labels") or ())
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"labels must be a non-empty list of the task's labels, got {labels!r}")
    if unknown := sorted(set(labels) - set(known)):
        raise ValueError(f"unknown label(s) {unknown} (the task's: {known or 'none'})")
    return list(dict.fromkeys(labels))


def check_topics(topics: Any) -> tuple[list[str], list[Any] | None]:
    """A planner's topics for generation: at most MAX_TOPICS, each cut to MAX_TOPIC_CHARS, blanks and repeats
    dropped; (the topics, what it asked when that changed anything, else None).

    Raises:
        ValueError: not a list of texts, or no topic left.
    """
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ValueError(f"topics must be a list of texts, got {topics!r}")
    out = list(dict.fromkeys(" ".join(t.split())[:MAX_TOPIC_CHARS] for t in topics if t.strip()))[:MAX_TOPICS]
    if not out:
        raise ValueError("topics is empty")
    return out, (list(topics) if out != topics else None)


def check_mix(mix: Any, state: dict[str, Any], ctx: Context) -> tuple[dict[str, int], dict[str, Any] | None]:
    """A planner's data mix (dataset -> rows) checked against the last search: (the mix, what it asked when a count
    was clipped to the retrieved cap, else None).

    Raises:
        ValueError: not an object of counts, a dataset the search did not find usable, or nothing to take.
    """
    if not isinstance(mix, dict) or not mix:
        raise ValueError(f"mix must be an object of dataset -> rows, got {mix!r}")
    usable = state.get("dataset_candidates") or []
    if unknown := sorted(str(k) for k in mix if k not in usable):
        raise ValueError(f"mix names datasets the search did not find usable: {unknown} (usable: {usable or 'none'})")
    out: dict[str, int] = {}
    for name, rows in mix.items():
        if not _is_number(rows):
            raise ValueError(f"mix rows must be numbers, got {name}: {rows!r}")
        out[name] = int(min(max(rows, 0), ctx.max_retrieved))
    out = {k: v for k, v in out.items() if v > 0}
    if not out:
        raise ValueError(f"mix takes no rows ({mix!r})")
    return out, (dict(mix) if out != mix else None)


def facts(state: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A short summary of the state for the planner prompt and the trace (no test score: never decided on)."""
    return {
        "labels": ", ".join(state["task"].get("labels") or ()),
        "steps_taken": state.get("steps", 0),
        "steps_left": ctx.max_steps - state.get("steps", 0),
        "dataset": state.get("dataset"),
        "usable_datasets": ", ".join(state.get("dataset_candidates") or ()),
        "retrieved_examples": state.get("retrieved", 0),
        "labelled_examples": state.get("labelled", 0),
        "generated_examples": state.get("generated", 0),
        "generation_target": generation_target(state, ctx),
        "base_model": state.get("base_model_name"),
        "loadable_base_models": ", ".join(state.get("model_candidates") or ()),
        "trained": bool(state.get("model_dir")),
        "val_score": state.get("val_score"),
        "decision_split": state.get("decision_split"),
        "decision_score": state.get("decision_score"),
        "best_score": state.get("best_score"),
        "target": ctx.target,
        "iterations_done": len(state.get("history", [])),
        "iterations_left": ctx.max_iterations - len(state.get("history", [])),
        "failures": state.get("failures"),
        "last_actions": state.get("done", [])[-4:],
    }
