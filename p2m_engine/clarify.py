"""Refine a task in conversation: find what a prompt leaves ambiguous, and apply the user's answers and edits.

Questions come from rules over the parsed task (nothing task-specific); answers and free-form requests
("add a neutral label", "more examples of sarcasm") become a `TaskEdit`, parsed by the LLM when one is
available (a named function call) and by a few plain patterns otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from p2m_engine.errors import LLMError
from p2m_engine.task import labels_in_instruction
from p2m_engine.types import TaskSpec
from prompts import render

logger = logging.getLogger(__name__)

YES = re.compile(r"^\s*(y|yes|yep|ok|okay|sure|go|go ahead|build|build it|looks good|lgtm|fine|correct|right)\b[.! ]*$",
                 re.IGNORECASE)
NO_CHANGE = re.compile(r"^\s*(no|nope|none|nothing|that'?s (all|it)|no more|n/?a)\b[.! ]*$", re.IGNORECASE)
# A refusal of the plan, or a request to end the chat ("no", "no, stop", "cancel", "quit"): nothing is built.
_REFUSE = r"(?:no|nope|n|cancel|stop|abort|quit|exit|q|bye|don'?t|do not|never ?mind|not now)"
_FILLER = rf"(?:{_REFUSE}|thanks|thank you|please|build|it|that)"
DECLINE = re.compile(rf"^\s*{_REFUSE}(?:[\s.,!;:-]+{_FILLER})*[\s.,!;:-]*$", re.IGNORECASE)
# Ending the chat at any question (where a plain "no" means "nothing to add", not a refusal).
CANCEL = re.compile(r"^\s*(?:cancel|stop|abort|quit|exit|q|bye)\b[\s.!]*$", re.IGNORECASE)
_ADD = re.compile(r"\badd(?: an?| the)?(?: new)? (?:label|class|category)s?\s*[:=]?\s*(.+)$", re.IGNORECASE)
_REMOVE = re.compile(r"\b(?:remove|drop|delete)(?: the)? (?:label|class|category)s?\s*[:=]?\s*(.+?)(?=\s+and\s+add\b|$)",
                     re.IGNORECASE)
_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\bor\b)\s*", re.IGNORECASE)
# "fraud for messages about suspicious charges", "fraud (suspicious charges)", "fraud: suspicious charges": a label
# of up to three words, then what it means.
_DESCRIBED = re.compile(r"^(?P<label>\S+(?:\s+\S+){0,2}?)\s*(?:\((?P<paren>[^)]+)\)\s*$|[:=]\s*(?P<colon>.+)$|"
                        r"\s(?P<word>(?:for|about|meaning|covering|when|if|which|that)\s.+)$)", re.IGNORECASE)
MAX_DESCRIPTION_CHARS = 200


@dataclass(frozen=True)
class Question:
    """Something the prompt leaves open, asked before anything is built."""

    key: str
    text: str


@dataclass(frozen=True)
class TaskEdit:
    """A change to the task the user asked for."""

    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    note: str = ""
    """A sentence appended to the instruction (it reaches every generation prompt)."""
    more_examples: bool = False
    """The user asked for more (or more varied) training examples."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """What a label means, in the user's words (label -> description), e.g. for a label added without demos."""

    def is_empty(self) -> bool:
        return not (self.add_labels or self.remove_labels or self.note or self.more_examples or self.descriptions)

    def describe(self) -> str:
        parts = []
        if self.add_labels:
            parts.append("added labels " + ", ".join(
                f"{x} ({self.descriptions[x]})" if x in self.descriptions else x for x in self.add_labels))
        described = {k: v for k, v in self.descriptions.items() if k not in self.add_labels}
        if described:
            parts.append("described " + "; ".join(f"{k}: {v}" for k, v in described.items()))
        if self.remove_labels:
            parts.append("removed labels " + ", ".join(self.remove_labels))
        if self.note:
            parts.append(f"noted: {self.note}")
        if self.more_examples:
            parts.append("more examples")
        return "; ".join(parts) or "no change"


def ambiguities(spec: TaskSpec) -> list[Question]:
    """What to ask about `spec` before building (an empty list: nothing to ask)."""
    questions = []
    if spec.task_type == "classification":
        enumerated = {x.lower() for x in labels_in_instruction(spec.instruction)}
        if not all(label.lower() in enumerated for label in spec.labels):
            questions.append(Question("labels", f"I found the labels {', '.join(spec.labels)} in your examples. "
                                                "Are there other labels? Name them, or say no."))
    else:
        outputs = [e.output.strip() for e in spec.examples]
        if outputs and all(0 < len(o.split()) <= 3 for o in outputs):
            questions.append(Question("task_type", "Your example outputs are short. Should the model pick one of a "
                                                   "fixed set of labels (say the labels), or write free text (say no)?"))
    if len(spec.examples) < 3:
        questions.append(Question("examples", f"You gave {len(spec.examples)} example(s). Anything the model should "
                                              "know about the inputs or what counts as correct? (or say no)"))
    return questions


def _labels(text: str) -> tuple[str, ...]:
    items = [x.strip(" .!\"'`") for x in _SPLIT.split(text)]
    return tuple(x for x in items if x and len(x.split()) <= 3)


def described_label(text: str) -> tuple[str, str] | None:
    """A label with what it means, as in "fraud for messages about suspicious charges" or "fraud (...)"; else None.

    The description is kept in the user's words (only trimmed), to be shown next to the label in every prompt.
    """
    m = _DESCRIBED.match(text.strip())
    if not m:
        return None
    label = m.group("label").strip(" .!\"'`")
    description = (m.group("paren") or m.group("colon") or m.group("word") or "").strip(" .\"'`")
    if m.group("word") and re.match(r"(for|meaning)\s", description, re.IGNORECASE):
        description = description.split(None, 1)[1]  # "for messages about x" -> "messages about x"
    if not label or not description or len(_labels(label)) != 1:  # "a or b for x": which one is described?
        return None
    return label, description[:MAX_DESCRIPTION_CHARS]


def _added(text: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The labels named in an "add ..." request, and the description of one when it comes with one."""
    described = described_label(text)
    if described:
        return (described[0],), {described[0]: described[1]}
    return _labels(text), {}


def rule_edit(request: str, spec: TaskSpec, question: Question | None = None) -> TaskEdit:
    """Parse an answer or request with plain patterns (used when no LLM is available or its answer is unusable)."""
    text = request.strip()
    if not text or YES.match(text) or NO_CHANGE.match(text):
        return TaskEdit()
    removed, added = _REMOVE.search(text), _ADD.search(text)
    if removed or added:
        add, descriptions = _added(added.group(1)) if added else ((), {})
        return TaskEdit(add_labels=add, descriptions=descriptions,
                        remove_labels=tuple(x for x in _labels(removed.group(1)) if x in spec.labels) if removed else ())
    if question is not None and question.key in ("labels", "task_type"):
        return TaskEdit(add_labels=_labels(text))
    more = bool(re.search(r"\bmore\b.*\b(examples?|data|samples?)\b", text, re.IGNORECASE))
    return TaskEdit(note=text.rstrip(".") + ".", more_examples=more)


EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "add_labels": {"type": "array", "items": {"type": "string", "maxLength": 40}},
        "remove_labels": {"type": "array", "items": {"type": "string", "maxLength": 40}},
        "note": {"type": "string", "maxLength": 200},
        "more_examples": {"type": "boolean"},
        "label_descriptions": {"type": "array", "items": {
            "type": "object", "properties": {"label": {"type": "string", "maxLength": 40},
                                             "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS}},
            "required": ["label", "description"]}},
    },
    "required": ["add_labels", "remove_labels", "note", "more_examples"],
}


def parse_edit(request: str, spec: TaskSpec, llm: Any = None, question: Question | None = None) -> TaskEdit:
    """Turn the user's words into a TaskEdit: plain answers by rule, anything else by the LLM when there is one.

    The LLM's edit is checked: removed labels must exist, added labels must be new and short, descriptions must
    be of a label the task has or gets; an unusable answer falls back to the rules. An added label the LLM
    gave without the description the user wrote ("add a label x for ...") gets it from the rules.
    """
    text = request.strip()
    if llm is None or not text or YES.match(text) or NO_CHANGE.match(text):
        return rule_edit(text, spec, question)
    messages = [{"role": "user", "content": render("edit_task", instruction=spec.instruction, labels=spec.labels,
                                                   descriptions=spec.label_descriptions,
                                                   question=question.text if question else "", request=text)}]
    try:
        ans = llm.call_tool(messages, "edit_task", EDIT_SCHEMA, temperature=0.0, max_tokens=256)
    except LLMError as e:
        logger.info("edit parsing by the LLM failed (%s); using rules", e)
        return rule_edit(text, spec, question)
    add = tuple(x.strip() for x in ans.get("add_labels") or [] if isinstance(x, str) and x.strip()
                and x.strip() not in spec.labels and len(x.split()) <= 3)
    remove = tuple(x for x in ans.get("remove_labels") or [] if x in spec.labels)
    known = set(add) | (set(spec.labels) - set(remove))
    descriptions = {str(d["label"]).strip(): " ".join(str(d["description"]).split())[:MAX_DESCRIPTION_CHARS]
                    for d in ans.get("label_descriptions") or []
                    if isinstance(d, dict) and str(d.get("label", "")).strip() in known and str(d.get("description", "")).strip()}
    by_rules = rule_edit(text, spec, question).descriptions
    descriptions |= {k: v for k, v in by_rules.items() if k in add and k not in descriptions}
    edit = TaskEdit(add, remove, str(ans.get("note") or "").strip()[:200], bool(ans.get("more_examples")), descriptions)
    return edit if not edit.is_empty() else rule_edit(text, spec, question)


def apply_edit(spec: TaskSpec, edit: TaskEdit) -> TaskSpec:
    """The task after `edit`: labels added or removed (a task with labels becomes classification), labels
    described, note appended."""
    labels = [x for x in spec.labels if x not in edit.remove_labels]
    labels += [x for x in edit.add_labels if x not in labels]
    task_type = spec.task_type
    if edit.add_labels and task_type != "classification":
        # Outputs of the demonstrations become labels too, so that they stay valid examples.
        labels = list(dict.fromkeys([*(e.output.strip() for e in spec.examples), *labels]))
        task_type = "classification"
    instruction = spec.instruction + (f"\n{edit.note}" if edit.note and edit.note not in spec.instruction else "")
    examples = tuple(e for e in spec.examples if task_type != "classification" or e.output in labels)
    # A removed label takes its description with it.
    descriptions = {k: v for k, v in {**spec.label_descriptions, **edit.descriptions}.items() if k in labels}
    return dataclasses.replace(spec, instruction=instruction, labels=tuple(labels), task_type=task_type,  # type: ignore[arg-type]
                               examples=examples, label_descriptions=descriptions)


@dataclass
class Transcript:
    """Questions asked and answers given, in order (kept in the trace)."""

    turns: list[dict[str, str]] = field(default_factory=list)

    def add(self, question: str, answer: str, change: str) -> None:
        self.turns.append({"question": question, "answer": answer, "change": change})
