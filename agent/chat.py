"""Chat on the build graph: answers from the trace, and steering.

In a chat the graph stops at `clarify_task` (agent/clarify.py) with an interrupt for every open question and
for the plan; the CLI shows it and answers it with the user's text (LangGraph's `Command(resume=text)`). After a build,
"why ..." questions are answered from the decision trace, and any other request edits the task and continues
the same graph thread from the planner.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.clarify import retarget
from agent.context import Context
from p2m_engine.clarify import TaskEdit, apply_edit, parse_edit
from p2m_engine.types import MAIN_METRIC, TaskSpec

# --- answers from the trace ---------------------------------------------------------------------------------

# Words of a question that point at a step of the build (the step names are the tools').
_TOPICS = [
    (re.compile(r"\b(data ?sets?|hub|retriev\w*|real data)\b", re.I), "search_datasets"),
    (re.compile(r"\b(base )?models?\b|\bstudent\b|\bencoder\b", re.I), "search_models"),
    (re.compile(r"\b(generat\w*|synthetic|examples?|teacher)\b", re.I), "generate_examples"),
    (re.compile(r"\b(train\w*|epochs?)\b", re.I), "train_model"),
    (re.compile(r"\b(scores?|evaluat\w*|accuracy|metrics?|test)\b", re.I), "evaluate_model"),
    (re.compile(r"\b(stop\w*|finish\w*|end\w*|done)\b", re.I), "finish"),
]


def _topic(question: str) -> str | None:
    for pattern, name in _TOPICS:
        if pattern.search(question):
            return name
    return None


def _readable(output: str) -> str:
    """A tool's result in words: the scalar fields of its JSON as "key: value" (the full JSON on request)."""
    try:
        data = json.loads(output)
    except ValueError:
        return output[:300]
    if not isinstance(data, dict):
        return output[:300]
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in data.items() if isinstance(v, (str, int, float)) or v is None]
    return "; ".join(parts)[:300] or "nothing to summarize"


def _taken(e: dict[str, Any], candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The candidate a search_datasets call took (by the record's `dataset`, or an older trace's reasons)."""
    name = e.get("dataset")
    if name:
        return next((c for c in candidates if c.get("name") == name), {"name": name})
    return next((c for c in candidates if "taken (" in str(c.get("reason", ""))), None)


def _score(c: dict[str, Any]) -> str:
    score = c.get("score")
    return f"{score:.2f}" if isinstance(score, (int, float)) else "unknown"


def datasets_answer(e: dict[str, Any]) -> str:
    """One search_datasets call in a sentence: the dataset taken and why, or the closest one and the bar it missed."""
    candidates = [c for c in e.get("candidates") or [] if isinstance(c, dict)]
    if not e.get("ok", True):
        return f"The dataset search failed: {e.get('error') or e.get('output_summary', '')}"
    taken = _taken(e, candidates)
    if taken is not None:
        reason = f": {taken['reason']}" if taken.get("reason") else ""
        return f"I used the dataset {taken.get('name')} (similarity {_score(taken)} to the task){reason}."
    if not candidates:
        return "No dataset was used: the search found no candidate (the hub folders hold no dataset)."
    best = max(candidates, key=lambda c: c.get("score") if isinstance(c.get("score"), (int, float)) else -1.0)
    text = (f"No dataset was used. The closest candidate was {best.get('name')}, with similarity {_score(best)} to the "
            f"task; it was rejected: {best.get('reason') or 'no reason recorded'}.")
    others = [c for c in candidates if c is not best]
    if others:
        text += " The others: " + ", ".join(f"{c.get('name')} ({_score(c)})" for c in others[:4]) + "."
    return text


def explain(question: str, trace: list[dict[str, Any]]) -> str:
    """Answer a "why" question from the decision trace: the decision, its reason, and what the step found, in
    sentences (`raw_result` gives the tool's JSON on request)."""
    topic = _topic(question)
    if topic is None:
        steps = [e["name"] for e in trace if e.get("kind") == "decision"]
        return ("I can explain these steps: " + ", ".join(dict.fromkeys(steps)) +
                ". Ask e.g. 'why did you pick this dataset?'") if steps else "Nothing has been decided yet."
    lines: list[str] = []
    decisions: list[str] = []  # how the step came to run: said after what it found
    for e in trace:
        if e.get("name") != topic:
            continue
        if e.get("kind") == "decision":
            decisions.append(f"Step {e.get('step')}: {topic} was chosen by {e.get('decided_by')} among "
                             f"{', '.join(e.get('allowed', []))}: {e.get('reason')}.")
        elif e.get("kind") == "tool" and topic == "search_datasets":
            lines.append(datasets_answer(e))
        elif e.get("kind") == "tool":
            lines.append(f"It returned: {_readable(str(e.get('output_summary', '')))}")
            for c in (e.get("candidates") or [])[:5]:
                if isinstance(c, dict):
                    fit = c.get("reason") or c.get("fit") or ""
                    lines.append(f"  - {c.get('name')}: score {c.get('score')}{'; ' + fit if fit else ''}")
        elif e.get("kind") == "finish":
            lines.append(f"The build stopped: {e.get('reason')} (score {e.get('score')}).")
    lines += decisions
    if not lines:
        return f"The build has not run {topic} yet."
    if any(e.get("kind") == "tool" and e.get("name") == topic for e in trace):
        lines.append("(Say 'show the JSON' for the step's full result.)")
    return "\n".join(lines)


def raw_result(topic: str | None, trace: list[dict[str, Any]]) -> str:
    """The JSON the last step of `topic` returned (what the "show the JSON" request prints)."""
    records = [e for e in trace if e.get("kind") == "tool" and (topic is None or e.get("name") == topic)]
    if not records:
        return "There is no step result to show yet; ask a why-question first (e.g. 'why this dataset?')."
    e = records[-1]
    body = {k: e.get(k) for k in ("name", "ok", "output_summary", "dataset", "candidates", "error") if e.get(k) is not None}
    return json.dumps(body, indent=2, ensure_ascii=False)


RAW = re.compile(r"\b(json|raw)\b", re.IGNORECASE)


def is_question(text: str) -> bool:
    return bool(re.match(r"^\s*(why|how come|what|which|explain)\b", text, re.I)) or text.strip().endswith("?")


def steer(state: dict[str, Any], request: str, llm: Any = None) -> tuple[dict[str, Any], TaskEdit]:
    """The state update that applies a user's request to a finished (or paused) build.

    The task is edited; the current model counts as not evaluated, and a request for more examples raises
    the generation target, so the planner offers generation, training and evaluation again.
    """
    spec = TaskSpec.from_dict(state["task"])
    edit = parse_edit(request, spec, llm)
    new = apply_edit(spec, edit)
    # The user's change starts a new round: models built before it are no longer the yardstick for "best".
    update: dict[str, Any] = {"task": new.to_dict(), "evaluated": False, "generation_stalled": False,
                              "finish_reason": None, "best_model_dir": None, "best_score": None,
                              "best_iteration": None, "targeted_stalled": False,
                              "trace": [{"kind": "human", "node": "chat", "step": state.get("steps", 0),
                                         "name": "steer", "request": request, "change": edit.describe()}]}
    if edit.more_examples or edit.add_labels or edit.note:
        update["extra_per_label"] = int(state.get("extra_per_label", 0)) + 1
    return update, edit



QUIT = {"", "q", "quit", "exit", "bye"}


def make_converse(trace_path_dir: Any, llm: Any, read: Any, show: Any, ctx: Context | None = None) -> Any:
    """The after-build chat turn: answer "why" questions from the trace, steer on any other request.

    Args:
        trace_path_dir: the run folder (its trace.jsonl is read fresh for every answer).
        llm: the teacher LLM used to parse requests (None: rules only).
        read: returns the user's next line.
        show: prints a message.
        ctx: the build's context: a request's edit is written to the run's records and retargets the build.
    """
    from agent.trace import read_trace

    def converse(state: dict[str, Any]) -> dict[str, Any] | None:
        show(f"Build finished: {state.get('finish_reason')} (score {state.get('score')}). Ask why, ask for a "
             "change (e.g. 'add a label X', 'more examples of ...'), or 'quit'.")
        topic = None
        while True:
            text = read().strip()
            if text.lower() in QUIT:
                return None
            if RAW.search(text):
                show(raw_result(_topic(text) or topic, read_trace(trace_path_dir)))
                continue
            if is_question(text):
                topic = _topic(text) or topic
                show(explain(text, read_trace(trace_path_dir)))
                continue
            update, edit = steer(state, text, llm)
            if edit.is_empty():
                show("I did not understand a change to make. Try 'add a label X', 'remove the label X', or "
                     "'more examples of ...'.")
                continue
            if ctx is not None:
                target = retarget(TaskSpec.from_dict(update["task"]), ctx)
                update["trace"][0] |= {"task": update["task"], "metric": MAIN_METRIC[update["task"]["task_type"]],
                                       "target": target}
            show(f"Changed: {edit.describe()}. Continuing the build.")
            return update

    return converse
