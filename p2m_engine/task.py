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
    """Return the prompt text from a file path, or the text itself when it names nothing on disk.

    Raises:
        TaskSpecError: the path is a directory, device or other non-file; the file is too large or not UTF-8
            text; or a path-like argument names no file.
    """
    if "\n" in source or len(source) >= 4096 or not source.strip():
        return source
    path = Path(source)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name the OS refuses (NUL byte, too long): it is text, not a path
        exists = False
    if exists and not path.is_file():
        kind = "a directory" if path.is_dir() else "a device or other special file"
        raise TaskSpecError(f"{source} is {kind}, not a prompt file. Pass a text file or the prompt text itself.")
    if not exists:
        if source.endswith((".txt", ".md", ".prompt")):
            raise TaskSpecError(f"No prompt file at {source!r}. Pass a file path or the prompt text itself.")
        return source
    # A UTF-8 character is at most 4 bytes: a larger file cannot be a prompt within the limit (and is not read).
    if path.stat().st_size > 4 * MAX_PROMPT_CHARS:
        raise TaskSpecError(f"{source} has {path.stat().st_size:,} bytes; the limit is {MAX_PROMPT_CHARS:,} characters.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskSpecError(f"{source} is not UTF-8 text ({e.reason} at byte {e.start}).") from e
    except OSError as e:
        raise TaskSpecError(f"Cannot read the prompt file {source}: {e.strerror}.") from e


def _value(raw: str, lineno: int, key: str) -> str:
    """The value of a field: a JSON string, a quoted string, or bare text.

    Raises:
        TaskSpecError: a quote is left open or stray (`"spam`, `spam"`): read as it stands, the quote would end up
            in the text, or make one label look like a different output and change the task type.
    """
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
        raise TaskSpecError(f"Line {lineno}: the {key} value {raw[:40]!r} opens a quote it never closes. "
                            f'Write {key}="..." with both quotes.')
    if raw.endswith('"') and raw.count('"') % 2 == 1:
        raise TaskSpecError(f"Line {lineno}: the {key} value {raw[:40]!r} ends with a quote it never opens. "
                            f'Write {key}="..." with both quotes, or no quotes.')
    return raw


def _split(text: str) -> tuple[str, list[Example]]:
    """Split prompt text into the instruction (text before the first field) and input/output pairs.

    Raises:
        TaskSpecError: a malformed value, an input without its output, or an output without its input
            (the line number says where): a demo is never dropped or changed silently.
    """
    lines = text.splitlines()
    instruction_lines: list[str] = []
    examples: list[Example] = []
    pending: tuple[int, str] | None = None
    seen_field = False
    for lineno, line in enumerate(lines, 1):
        m = _FIELD.match(line)
        if not m:
            if not seen_field:
                instruction_lines.append(line)
            continue
        seen_field = True
        key = m.group(1).lower()
        value = _value(m.group(2), lineno, key)
        if key == "input":
            if pending is not None:
                raise TaskSpecError(f"Line {pending[0]}: this input has no output line (line {lineno} starts the next "
                                    'input). Add output="..." after it, or remove it.')
            pending = (lineno, value)
        elif pending is None:
            raise TaskSpecError(f'Line {lineno}: an output without an input before it. Add input="..." above it.')
        else:
            examples.append(Example(pending[1], value))
            pending = None
    if pending is not None:
        raise TaskSpecError(f'Line {pending[0]}: the last input has no output line. Add output="..." after it.')
    return "\n".join(instruction_lines).strip(), examples


def labels_in_instruction(instruction: str) -> list[str]:
    """Find an enumeration of options such as 'A, B, or C' or 'A or B' in the instruction.

    Returns the longest enumeration found (possibly empty). Purely lexical: no task is special-cased.
    """
    token = r"[\w/&+\-']+"
    # The last item of a list of three or more may be two words ending the clause ("..., returns, or technical
    # support."); a two-item list keeps one word, since "positive or negative sentiment" names no label.
    pattern = re.compile(rf"({token}(?:\s*,\s*{token})*\s*,?\s+(?:or|and)\s+{token})(\s+{token}(?=\s*(?:[.?!;:)]|$)))?",
                         re.UNICODE)
    best: list[str] = []
    for m in pattern.finditer(instruction):
        parts = re.split(r"\s*,\s*(?:(?:or|and)\s+)?|\s+(?:or|and)\s+", m.group(1))
        parts = [p.strip(" ,") for p in parts if p.strip(" ,")]
        if m.group(2) and len(parts) >= 3:
            parts[-1] += m.group(2)
        if len(parts) > len(best):
            best = parts
    # Options separated by a spaced slash or bar: "(low / medium / high)", "yes | no".
    for m in re.finditer(rf"{token}(?:\s+[/|]\s+{token})+", instruction, re.UNICODE):
        parts = re.split(r"\s+[/|]\s+", m.group(0))
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
