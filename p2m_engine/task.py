"""Parse a task prompt (instruction + demonstrations) into a TaskSpec."""

from __future__ import annotations

import json
import re
from pathlib import Path

from p2m_engine.errors import TaskSpecError
from p2m_engine.types import Example, TaskSpec

# Prompts longer than this are refused: no small LLM context holds them, and Prompt2Model
# looped forever on such input.
MAX_PROMPT_CHARS = 20_000
# A demo output of at most this many words may be a class label.
MAX_LABEL_WORDS = 3

_FIELD = re.compile(r"^\s*(input|output)\s*[=:]\s*(.*)$", re.IGNORECASE)


def read_prompt(source: str) -> str:
    """Return the prompt text from a file path, or the text itself when it is not a file.

    Raises:
        TaskSpecError: the file is not UTF-8 text, or a path-like argument names no file.
    """
    if "\n" in source or len(source) >= 4096:
        return source
    path = Path(source)
    if not path.is_file():
        if source.endswith((".txt", ".md", ".prompt")):
            raise TaskSpecError(f"No prompt file at {source!r}. Pass a file path or the prompt text itself.")
        return source
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskSpecError(f"{source} is not UTF-8 text ({e.reason} at byte {e.start}).") from e


def _value(raw: str) -> str:
    raw = raw.strip()
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
            if isinstance(value, str):
                return value
        except json.JSONDecodeError:
            pass
        if raw.endswith('"') and len(raw) >= 2:
            return raw[1:-1]
    return raw


def _split(text: str) -> tuple[str, list[Example]]:
    """Split prompt text into the instruction (text before the first field) and input/output pairs."""
    lines = text.splitlines()
    instruction_lines: list[str] = []
    examples: list[Example] = []
    pending: str | None = None
    seen_field = False
    for line in lines:
        m = _FIELD.match(line)
        if not m:
            if not seen_field:
                instruction_lines.append(line)
            continue
        seen_field = True
        key, value = m.group(1).lower(), _value(m.group(2))
        if key == "input":
            pending = value
        elif pending is not None:
            examples.append(Example(pending, value))
            pending = None
    return "\n".join(instruction_lines).strip(), examples


def labels_in_instruction(instruction: str) -> list[str]:
    """Find an enumeration of options such as 'A, B, or C' or 'A or B' in the instruction.

    Returns the longest enumeration found (possibly empty). Purely lexical: no task is special-cased.
    """
    token = r"[\w/&+\-']+"
    pattern = re.compile(rf"({token}(?:\s*,\s*{token})*\s*,?\s+(?:or|and)\s+{token})", re.UNICODE)
    best: list[str] = []
    for m in pattern.finditer(instruction):
        parts = re.split(r"\s*,\s*(?:(?:or|and)\s+)?|\s+(?:or|and)\s+", m.group(1))
        parts = [p.strip(" ,") for p in parts if p.strip(" ,")]
        if len(parts) > len(best):
            best = parts
    return best


def infer_labels(instruction: str, examples: list[Example]) -> tuple[str, ...]:
    """The label set: demo outputs, completed by an enumeration in the instruction that contains them."""
    demo_labels = list(dict.fromkeys(e.output.strip() for e in examples))
    enumerated = labels_in_instruction(instruction)
    # The enumeration counts only if every demo label is one of its items (case-insensitive);
    # otherwise words such as "positive or negative" in an unrelated phrase would invent labels.
    lowered = {e.lower(): e for e in enumerated}
    if demo_labels and all(d.lower() in lowered for d in demo_labels):
        labels = list(demo_labels)
        for item in enumerated:
            if item.lower() not in {d.lower() for d in labels}:
                labels.append(item)
        return tuple(labels)
    return tuple(demo_labels)


def is_span_extraction(examples: list[Example]) -> bool:
    """Every demo output is a short, non-empty span copied verbatim from a much longer input."""
    return bool(examples) and all(
        e.output.strip() and e.output.strip() in e.input and len(e.output.strip()) * 4 <= len(e.input)
        for e in examples
    )


def infer_task_type(examples: list[Example], labels: tuple[str, ...], instruction: str) -> str:
    """Classification when outputs are short and drawn from a small, repeated or enumerated set;
    extractive QA when every output is a span of its input; generation otherwise."""
    outputs = [e.output.strip() for e in examples]
    short = all(0 < len(o.split()) <= MAX_LABEL_WORDS and len(o) <= 40 for o in outputs)
    enumerated = {x.lower() for x in labels_in_instruction(instruction)}
    covered = bool(enumerated) and all(o.lower() in enumerated for o in outputs)
    repeated = len(set(outputs)) < len(outputs)
    if short and (covered or repeated) and len(labels) >= 2:
        return "classification"
    return "extractive-qa" if is_span_extraction(examples) else "generation"


def _refuse_single_label(instruction: str, examples: list[Example], labels: tuple[str, ...], task_type: str) -> None:
    """A classification with one label only (every demo has the same short output, and the instruction names
    it) cannot be learned: say so instead of training a model that always answers that label."""
    outputs = {e.output.strip() for e in examples}
    if task_type == "classification" or len(outputs) != 1 or len(labels) > 1:
        return
    (only,) = outputs
    if not (0 < len(only.split()) <= MAX_LABEL_WORDS and len(only) <= 40):
        return
    if re.search(rf"(?<!\w){re.escape(only)}(?!\w)", instruction, flags=re.IGNORECASE):
        raise TaskSpecError(
            f"The task looks like a classification with one label only ({only!r}): every demonstration has that "
            "output. Add demonstrations of the other label(s), or name them in the instruction "
            f"(e.g. '{only} or not_{only}')."
        )


def parse_task(text: str) -> TaskSpec:
    """Parse a prompt into a TaskSpec.

    Args:
        text: the prompt: an instruction followed by demonstrations, each an `input="..."` line
            and an `output="..."` line (values as JSON strings or bare text; `Input:` also works).

    Returns:
        The task spec, with task type and label set inferred from the demonstrations.

    Raises:
        TaskSpecError: empty, too long, no demonstrations, or contradictory demonstrations.
    """
    if not text or not text.strip():
        raise TaskSpecError("The prompt is empty. Write an instruction and a few input=/output= examples.")
    if len(text) > MAX_PROMPT_CHARS:
        raise TaskSpecError(
            f"The prompt has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}. "
            "Keep the instruction short and give 3-10 representative demonstrations."
        )
    instruction, examples = _split(text)
    if not instruction:
        raise TaskSpecError("The prompt has no instruction before its examples. Say what the model should do.")
    if not examples:
        raise TaskSpecError(
            'The prompt has no demonstrations. Add a few pairs of lines: input="..." then output="...".'
        )
    by_input: dict[str, str] = {}
    for e in examples:
        if e.input in by_input and by_input[e.input] != e.output:
            raise TaskSpecError(
                f"Contradictory demonstrations: input {e.input[:60]!r} has outputs "
                f"{by_input[e.input]!r} and {e.output!r}."
            )
        by_input[e.input] = e.output
    labels = infer_labels(instruction, examples)
    task_type = infer_task_type(examples, labels, instruction)
    _refuse_single_label(instruction, examples, labels, task_type)
    if task_type != "classification":
        labels = ()
    return TaskSpec(instruction=instruction, examples=tuple(examples), task_type=task_type, labels=labels)  # type: ignore[arg-type]
