"""Generate input/output pairs for tasks without labels (free generation, extractive QA): new inputs in the
style of the demos first, then each input's output by self-consistency over several teacher samples."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from p2m_engine.data.attributes import TOPICS
from p2m_engine.errors import UnparseableAnswerError, UnsupportedTaskError
from p2m_engine.data.input_fields import FieldTemplate, field_template, format_markers
from p2m_engine.llm import LLM
from p2m_engine.eval.metrics import normalize_answer
from p2m_engine.data.pair_checks import PairChecks
from p2m_engine.runs import append_jsonl, read_jsonl
from p2m_engine.data.synth import REFUSAL, Progress, TextChecks, normalize, shingles
from p2m_engine.types import DataResult, TaskSpec
from prompts import render

logger = logging.getLogger(__name__)

PAIR_TASK_TYPES = ("generation", "extractive-qa")
_SPACE = re.compile(r"\s+")
_PUNCT_SPACE = re.compile(r"\s*([^\w\s])\s*", re.UNICODE)
_WORDS = re.compile(r"\w+", re.UNICODE)
# A subject per input batch: the small teacher otherwise copies the demos. Generic on purpose (no task's names).
_PREFIX_END = re.compile(r"[\]):]\s+|\n")
# What the answer prompt adds to the instruction, per task type.
_ANSWER_RULES = {
    "extractive-qa": "The output must be copied exactly, character for character, from the input: the shortest span "
                     "that answers it.",
    "generation": "Write only the output, in exactly the format of the example outputs.",
}


@dataclass(frozen=True)
class PairsConfig:
    """How input/output pairs are generated."""

    n: int = field(default=100, metadata={"help": "target number of generated pairs in total"})
    batch_size: int = field(default=5, metadata={"help": "inputs asked for in one LLM call (fewer for long inputs)"})
    batch_chars: int = field(default=3000, metadata={"help": "characters of new input asked for in one call at most"})
    temperature_start: float = field(default=0.8, metadata={"help": "input sampling temperature at the first batch"})
    temperature_end: float = field(default=1.2, metadata={"help": "input temperature once the target is reached (annealed linearly)"})
    temperature_boost: float = field(default=0.25, metadata={"help": "added to the input temperature per batch that gave no new input"})
    context_examples: int = field(default=2, metadata={"help": "earlier generated inputs shown next to the demos"})
    votes: int = field(default=3, metadata={"help": "teacher samples of each input's output (self-consistency)"})
    answer_temperature: float = field(default=0.7, metadata={"help": "sampling temperature of the output votes"})
    min_agreement: float = field(default=0.6, metadata={"help": "share of the votes the majority output needs (0.6 of 3 = 2)"})
    min_chars: int = field(default=3, metadata={"help": "shorter inputs are dropped"})
    max_chars: int = field(default=1000, metadata={"help": "longest input ever asked for (schema maxLength; llama.cpp refuses more)"})
    length_factor: float = field(default=2.0, metadata={"help": "an input may be this many times the longest demo input"})
    max_output_chars: int = field(default=400, metadata={"help": "longest output (schema maxLength of a vote)"})
    near_duplicate: float = field(default=0.6, metadata={"help": "share of its word 3-grams an input must share with another to be a near copy"})
    min_new_trigrams: int = field(default=4, metadata={"help": "a similar input must bring this many new word 3-grams to count as new"})
    max_batches_factor: int = field(default=3, metadata={"help": "at most this many times the input batches the target needs"})
    max_failed_batches: int = field(default=4, metadata={"help": "consecutive batches with no kept pair before generation stops"})
    seed: int = field(default=0, metadata={"help": "seed of the context sampling"})
    concurrency: int = field(default=1, metadata={"help": "inputs of a batch answered together (1: one after another, "
                                                          "each input's votes always in turn)"})


@dataclass
class InputFilters(TextChecks):
    """The text checks on generated inputs, with a near-copy rule for inputs that share a long part; counts
    what each one dropped.

    Inputs of many tasks share a long part (a passage or a database schema with a new question), so an input
    is a near copy only when it brings fewer than a few word 3-grams that the other text lacks (and most of its
    own are shared). Field markers every demo input has (`Question:`, `[Posted:`) must be kept.
    """

    config: PairsConfig
    max_chars: int
    banned: set[str]  # normalised demos and held-out inputs: never training data
    banned_texts: list[str] = field(default_factory=list)  # demos and held-out inputs, for the near-copy check
    markers: frozenset[str] = frozenset()  # "Word:" markers that every demo input contains
    seen: set[str] = field(default_factory=set)
    kept: list[frozenset[str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    near_copy_reason = "near_copy_of_demo_or_test"

    def __post_init__(self) -> None:
        self._banned_shingles = [shingles(t) for t in self.banned_texts]

    @property
    def bounds(self) -> tuple[int, int]:
        return self.config.min_chars, self.max_chars

    def _near(self, sh: frozenset[str], pool: list[frozenset[str]]) -> bool:
        # Few new 3-grams, and few relative to the input's own: a long passage with a new question brings
        # enough; a copy with a word changed, or a demo cut short, does not; a short new text (few 3-grams,
        # all new) is not a copy.
        most = (1 - self.config.near_duplicate) * len(sh)
        return any((new := len(sh - other)) < self.config.min_new_trigrams and new <= most for other in pool)

    def _format_problem(self, text: str) -> str | None:
        return "format_marker_missing" if any(m not in text for m in self.markers) else None

    def check(self, text: str) -> str | None:
        """Return the reason to drop the input, or None to keep it."""
        return self.text_problem(text)

    def accept(self, text: str) -> bool:
        """Keep `text` (and remember it) unless a check drops it; count the reason."""
        return self.keep_or_count(text, self.check(text))


def format_prefix(texts: list[str]) -> str:
    """The literal prefix every one of `texts` starts with, cut after its last `]`, `)`, `:` or line end
    (e.g. `[Posted: 2013-03-22] `, `Question: `); empty with fewer than two texts or no such boundary."""
    if len(texts) < 2:
        return ""
    common = texts[0]
    for t in texts[1:]:
        i = 0
        while i < min(len(common), len(t)) and common[i] == t[i]:
            i += 1
        common = common[:i]
    ends = [m.end() for m in _PREFIX_END.finditer(common)]
    return common[: ends[-1]] if ends else ""


def repair_format(text: str, prefix: str, markers: frozenset[str]) -> str:
    """Put back the demos' shared prefix on an input that lacks it and the field markers in it (the small teacher
    often writes only the free part of the input, or drops a leading `Question: `); an input with its own
    prefix (`[Posted: 2001-01-01] ...`) is left alone."""
    own = [m for m in markers if m in prefix]
    if prefix and not text.startswith(prefix) and not any(m in text for m in own):
        return prefix + text
    return text


def vote_key(text: str, task_type: str) -> str:
    """What two outputs must share to count as the same answer.

    Extractive QA uses the SQuAD normalisation (case, punctuation, articles); free generation only folds case
    and white space (also around punctuation), since punctuation carries meaning in code and formats.
    """
    if task_type == "extractive-qa":
        return normalize_answer(text)
    return _PUNCT_SPACE.sub(r"\1", _SPACE.sub(" ", text.strip().lower()))


def as_span(answer: str, source: str) -> str | None:
    """The exact substring of `source` that `answer` is, matched case-insensitively; None when it is none."""
    answer = answer.strip().strip("\"'`").strip()
    if not answer:
        return None
    if answer in source:
        return answer
    start = source.lower().find(answer.lower())
    # lower() can change a string's length (a few Unicode letters); then only the exact match above counts.
    if start >= 0 and len(source.lower()) == len(source):
        return source[start : start + len(answer)]
    return None


@dataclass(frozen=True)
class Vote:
    """The outcome of self-consistency for one input."""

    output: str | None
    reason: str | None  # why no output was chosen
    samples: list[str]
    agreement: float


# Free text: when every demo output has at least FREE_TEXT_WORDS words (a summary, an explanation), samples of one
# answer differ in wording and exact votes rarely agree (dialogsum, own data hidden: 4 of the 9 dialogues answered
# had no majority, and no pair was kept).
# Then, without an exact majority, the sample closest to the others wins (the highest mean chrF++ to them: minimum
# Bayes risk, as in MBR decoding), when that mean reaches FREE_TEXT_AGREEMENT.
FREE_TEXT_WORDS = 12
FREE_TEXT_AGREEMENT = 0.4


def free_text(outputs: list[str]) -> bool:
    """Outputs of free text: every one has at least FREE_TEXT_WORDS words."""
    return bool(outputs) and all(len(_WORDS.findall(o)) >= FREE_TEXT_WORDS for o in outputs)


def medoid(samples: list[str]) -> tuple[str, float]:
    """The sample with the highest mean sentence chrF++ to the other samples, and that mean (0-1)."""
    from p2m_engine.eval.metrics import chrf_pp

    best, score = samples[0], -1.0
    for i, s in enumerate(samples):
        others = [o for j, o in enumerate(samples) if j != i]
        mean = sum(chrf_pp([o], [s]) for o in others) / max(1, len(others))
        if mean > score:
            best, score = s, mean
    return best, score


def majority(samples: list[str | None], task_type: str, votes: int, min_agreement: float,
             free: bool = False) -> Vote:
    """Choose the output most samples agree on, if it has a clear majority of `votes`.

    Args:
        samples: the teacher's outputs; None marks an invalid one (no answer, not a span).
        task_type: decides how outputs are compared.
        votes: how many samples were asked for (the denominator, so an early stop cannot inflate agreement).
        min_agreement: share of `votes` the winner needs; a tie for first place never wins.
        free: the outputs are free text (`free_text`): without an exact majority, the medoid of two or more samples
            wins when its mean chrF++ to the others reaches FREE_TEXT_AGREEMENT (its agreement is that mean).

    Returns:
        The chosen output (its most common exact form) or the reason there is none.
    """
    valid = [s for s in samples if s is not None and s.strip()]
    shown = [s or "" for s in samples]
    if not valid:
        return Vote(None, "not_a_span" if task_type == "extractive-qa" and samples else "empty_output", shown, 0.0)
    counts = Counter(vote_key(s, task_type) for s in valid)
    ranked = counts.most_common()
    top_key, top = ranked[0]
    agreement = top / max(votes, len(samples))
    if agreement < min_agreement or (len(ranked) > 1 and ranked[1][1] == top):
        if free and len(valid) >= 2:
            best, mean = medoid([s.strip() for s in valid])
            if mean >= FREE_TEXT_AGREEMENT:
                return Vote(best, None, shown, round(mean, 3))
        return Vote(None, "no_majority", shown, round(agreement, 3))
    forms = Counter(s.strip() for s in valid if vote_key(s, task_type) == top_key)
    return Vote(forms.most_common(1)[0][0], None, shown, round(agreement, 3))


def _decided(counts: Counter[str], taken: int, votes: int, needed: int) -> bool:
    """True when the remaining votes cannot change whether (and which) answer wins."""
    ranked = [c for _, c in counts.most_common(2)] + [0, 0]
    left = votes - taken
    if ranked[0] + left < needed:
        return True  # nobody can reach a majority any more
    return ranked[0] >= needed and ranked[0] > ranked[1] + left


# llama.cpp refuses the grammar of a longer string ("number of rules ... exceeds sane defaults": measured with
# llama_sampler_init_grammar, maxLength 1000 compiles and 1010 does not) and its server then drops the connection.
GRAMMAR_MAX_LENGTH = 1000


def _input_schema(n: int, max_chars: int) -> dict[str, object]:
    """n required string fields, not an array (an array came back with one item; see synth._schema)."""
    keys = [f"input_{i}" for i in range(1, n + 1)]
    max_chars = min(max_chars, GRAMMAR_MAX_LENGTH)
    return {"type": "object", "properties": {k: {"type": "string", "maxLength": max_chars} for k in keys},
            "required": keys}


def _field_schema(n: int, template: FieldTemplate, limits: dict[str, int]) -> dict[str, object]:
    """n inputs as separate fields each (`input_1_context`, `input_1_question`, ...), the long field first."""
    keys = {f"input_{i}_{template.names[j]}": limits[template.names[j]]
            for i in range(1, n + 1) for j in template.order}
    return {"type": "object", "required": list(keys),
            "properties": {k: {"type": "string", "maxLength": min(v, GRAMMAR_MAX_LENGTH)} for k, v in keys.items()}}


# An input of several lines (a dialogue's turns) is asked for line by line once the demos' fewest lines reach this:
# asked for whole, the 0.5B teacher wrote one-line "dialogues" (dialogsum, own data hidden: 9 of 12 inputs of the
# wrong shape and no pair kept). Never more than LINES_MAX lines, so that the grammar stays small.
LINES_MIN = 3
LINES_MAX = 12


def input_lines(demos: list[str]) -> int:
    """Lines each input is written as: the demos' fewest non-empty lines when every demo has at least LINES_MIN
    (at most LINES_MAX), else 0 (the input is one string)."""
    fewest = min((sum(1 for line in d.splitlines() if line.strip()) for d in demos), default=0)
    return min(fewest, LINES_MAX) if fewest >= LINES_MIN else 0


# A written line is at least this long: left free, the 0.5B teacher left half the lines of a dialogue empty.
LINE_MIN_CHARS = 8


def _lines_schema(n: int, lines: int, max_chars: int) -> dict[str, object]:
    """n inputs as `lines` required string fields each (`input_1_line_1`, ...), each LINE_MIN_CHARS to
    `max_chars` long."""
    keys = [f"input_{i}_line_{j}" for i in range(1, n + 1) for j in range(1, lines + 1)]
    longest = max(LINE_MIN_CHARS, min(max_chars, GRAMMAR_MAX_LENGTH))
    return {"type": "object", "required": keys,
            "properties": {k: {"type": "string", "minLength": LINE_MIN_CHARS, "maxLength": longest} for k in keys}}


def _joined(answer: dict[str, Any], n: int, lines: int) -> list[str]:
    """The inputs of a line-by-line answer, one line each per field; an input missing a line is skipped."""
    texts = []
    for i in range(1, n + 1):
        parts = [answer.get(f"input_{i}_line_{j}") for j in range(1, lines + 1)]
        if all(isinstance(x, str) and x.strip() for x in parts):
            texts.append("\n".join(x.strip() for x in parts))  # type: ignore[union-attr]
    return texts


def _assembled(answer: dict[str, Any], n: int, template: FieldTemplate) -> list[str]:
    """The inputs of a field-by-field answer, markers put back; an input missing a field is skipped."""
    texts = []
    for i in range(1, n + 1):
        values = {name: answer.get(f"input_{i}_{name}") for name in template.names}
        if all(isinstance(v, str) and v.strip() for v in values.values()):
            texts.append(template.assemble(values))  # type: ignore[arg-type]
    return texts


def field_limits(demos: list[str], template: FieldTemplate, limit: int, factor: float) -> dict[str, int]:
    """Each field's longest length in the demos times `factor`, within the input limit."""
    split = [template.split(d) or {} for d in demos]
    return {name: max(8, min(limit, int(factor * max((len(s.get(name, "")) for s in split), default=limit))))
            for name in template.names}


def _output_schema(max_chars: int) -> dict[str, object]:
    max_chars = min(max_chars, GRAMMAR_MAX_LENGTH)
    return {"type": "object", "properties": {"output": {"type": "string", "maxLength": max_chars}},
            "required": ["output"]}


def _fields(answer: dict[str, Any], prefix: str) -> list[str]:
    """String fields `<prefix>_1..n` of an answer in numeric order (an `<prefix>s` list is accepted too)."""
    if isinstance(answer.get(prefix + "s"), list):
        return [x for x in answer[prefix + "s"] if isinstance(x, str)]
    keys = [k for k in answer if k.startswith(prefix + "_") and k[len(prefix) + 1 :].isdigit()]
    keys.sort(key=lambda k: int(k[len(prefix) + 1 :]))
    return [v for k in keys if isinstance(v := answer[k], str)]


class Answerer:
    """Asks the teacher for one input's output several times and takes the majority."""

    def __init__(self, spec: TaskSpec, llm: LLM, config: PairsConfig) -> None:
        self.spec, self.llm, self.config = spec, llm, config
        self.needed = max(1, math.ceil(config.min_agreement * config.votes - 1e-9))
        self.free = spec.task_type == "generation" and free_text([e.output for e in spec.examples])

    def __call__(self, text: str) -> Vote:
        cfg, task_type = self.config, self.spec.task_type
        messages = [{"role": "user", "content": render(
            "answer_input", instruction=self.spec.instruction, rule=_ANSWER_RULES[task_type],
            examples=list(self.spec.examples), input=text)}]
        samples: list[str | None] = []
        raw: list[str] = []  # what the teacher wrote, for the row's provenance
        counts: Counter[str] = Counter()
        for i in range(cfg.votes):
            try:
                answer = self.llm.call_tool(messages, "write_output", _output_schema(cfg.max_output_chars),
                                            temperature=cfg.answer_temperature,
                                            max_tokens=min(1024, 32 + cfg.max_output_chars // 2), variant=i)
                out = answer.get("output")
                sample = out.strip() if isinstance(out, str) else None
            except UnparseableAnswerError:
                sample = None
            raw.append(sample or "")
            if sample is not None and task_type == "extractive-qa":
                sample = as_span(sample, text)
            if sample is not None and (not sample or REFUSAL.match(sample)):
                sample = None
            samples.append(sample)
            if sample is not None:
                counts[vote_key(sample, task_type)] += 1
            if _decided(counts, len(samples), cfg.votes, self.needed):
                break
        return dataclasses.replace(majority(samples, task_type, cfg.votes, cfg.min_agreement, self.free), samples=raw)


def _votes(answer: Answerer, texts: list[str], concurrency: int) -> Iterator[Vote]:
    """Each text's vote, in the texts' order: asked one at a time as the caller reads them (so a caller that stops
    early asks no more), or all at once, `concurrency` in flight (the same votes: each depends on its text alone)."""
    if concurrency <= 1:
        return (answer(text) for text in texts)
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        return iter(list(executor.map(answer, texts)))


def _shown(text: str, template: FieldTemplate | None) -> str:
    """An example input as the answer writes it: a JSON string, or a JSON object of its fields (long one first)."""
    fields = template.split(text) if template else None
    if template is None or fields is None:
        return json.dumps(text, ensure_ascii=False)
    return json.dumps({template.names[j]: fields[template.names[j]] for j in template.order}, ensure_ascii=False)


def input_limit(spec: TaskSpec, config: PairsConfig) -> int:
    longest = max((len(e.input) for e in spec.examples), default=config.max_chars // 2)
    return max(config.min_chars + 1, min(config.max_chars, int(longest * config.length_factor)))


def generate_pairs(
    spec: TaskSpec,
    llm: LLM,
    out_path: Path,
    config: PairsConfig = PairsConfig(),
    *,
    exclude: list[str] = (),  # type: ignore[assignment]
    progress: Progress | None = None,
    topics: tuple[str, ...] = (),
) -> DataResult:
    """Generate `config.n` input/output pairs and append each to `out_path` as soon as it is decided.

    Each round asks the teacher for a batch of new inputs (demos and a few earlier inputs in view, temperature
    annealed upward as data accumulates), filters them, then answers each kept input `config.votes` times and
    keeps the majority output (for extractive QA only outputs that are spans of the input count).
    Rows already in `out_path` count towards the target, so a resumed run continues where it stopped.

    Args:
        spec: a generation or extractive-qa task with demonstrations.
        llm: the teacher.
        out_path: JSONL file, appended to; each row carries its provenance.
        config: generation settings.
        exclude: held-out inputs (test, validation) that must never become training data.
        progress: called with (done, total) after each batch.
        topics: the topics input batches are written about (the planner's), instead of the built-in list.

    Returns:
        Where the data is, how many pairs it has, what each filter dropped, and why generation stopped
        short of the target (`stop_reason`, None when the target was reached).

    Raises:
        UnsupportedTaskError: the task is classification (use synth.generate_labelled_examples) or has no demos.
        LLMError: the LLM service keeps failing.
    """
    if spec.task_type not in PAIR_TASK_TYPES:
        raise UnsupportedTaskError(f"generate_pairs handles {' and '.join(PAIR_TASK_TYPES)} tasks, not {spec.task_type}.")
    if not spec.examples:
        raise UnsupportedTaskError("Generating pairs needs at least one input/output demonstration in the prompt.")
    limit = input_limit(spec, config)
    demos = [e.input for e in spec.examples]
    banned = {normalize(x) for x in demos} | {normalize(x) for x in exclude}
    markers, prefix = format_markers(demos), format_prefix(demos)
    # Inputs of marked fields ("Question: ... Context: ...") are asked for field by field.
    template = field_template(demos)
    by_field = field_limits(demos, template, limit, config.length_factor) if template else {}
    # Inputs of several lines (turns) are asked for line by line, as many as the demos' fewest.
    lines = 0 if template else input_lines(demos)
    longest_line = max((len(line) for d in demos for line in d.splitlines()), default=0)
    line_chars = min(limit // lines, int(config.length_factor * longest_line)) if lines else 0
    # The length check allows for a prefix put back by repair_format.
    filters = InputFilters(config, limit + len(prefix), banned, demos + [x for x in exclude if x], markers)
    # What the teacher gets wrong about a pair, measured against the demos (p2m_engine.data.pair_checks).
    checks = PairChecks.from_demos(demos, [e.output for e in spec.examples])
    kept: list[str] = []
    if out_path.exists():
        for row in read_jsonl(out_path):
            text, out = row.get("input"), row.get("output")
            if isinstance(text, str) and isinstance(out, str) and filters.accept(text):
                kept.append(text)
    filters.dropped.clear()
    dropped: Counter[str] = Counter()
    calls_before, tokens_before = llm.usage.calls, llm.usage.tokens
    rng = random.Random(config.seed)
    answer = Answerer(spec, llm, config)
    n_batch = max(1, min(config.batch_size, config.batch_chars // limit))
    max_batches = config.max_batches_factor * -(-config.n // n_batch) + config.max_failed_batches
    fresh: list[str] = []  # inputs accepted this run (whatever their vote): context for diversity
    batch = failed = no_new_inputs = 0
    stopped: str | None = None
    while len(kept) < config.n:
        if failed >= config.max_failed_batches:
            stopped = f"no new pair in {failed} consecutive batches"
            break
        if batch >= max_batches:
            stopped = f"call budget spent ({max_batches} input batches)"
            break
        batch += 1
        t = config.temperature_start + (config.temperature_end - config.temperature_start) * len(kept) / config.n
        # Batches that keep coming back as copies get a hotter sampler.
        t = round(min(t + config.temperature_boost * no_new_inputs, 2.0), 2)
        pool = kept + [x for x in fresh if x not in kept]
        shown = demos + rng.sample(pool, min(config.context_examples, len(pool)))
        rng.shuffle(shown)
        # The full batch even near the target: some inputs will lose their vote.
        n = n_batch
        topic = rng.choice(topics or TOPICS)
        messages = [
            {"role": "system", "content": render("generate_inputs_system", max_chars=limit)},
            # Shown as JSON strings, as the answer writes them: a prefix such as "[Posted: ...]" or a newline
            # inside an input is then visibly part of it.
            {"role": "user", "content": render("generate_inputs", instruction=spec.instruction,
                                               inputs=[_shown(x, template) for x in shown], n=n, topic=topic,
                                               lines=lines)},
        ]
        try:
            schema = (_field_schema(n, template, by_field) if template else
                      _lines_schema(n, lines, line_chars) if lines else _input_schema(n, limit))
            reply = llm.call_tool(messages, "write_inputs", schema, temperature=t,
                                  max_tokens=min(3072, 32 + n * (limit // 3 + 8 * lines)), variant=batch)
            texts = (_assembled(reply, n, template) if template else
                     [repair_format(x, prefix, markers) for x in _joined(reply, n, lines)] if lines else
                     [repair_format(x.strip(), prefix, markers) for x in _fields(reply, "input")[:n]])
        except UnparseableAnswerError:
            dropped["unparseable_batch"] += 1
            texts = []
        new = []
        for x in texts:
            if shape := checks.input_problem(x):
                dropped[shape] += 1
            elif filters.accept(x):
                new.append(x)
        no_new_inputs = 0 if new else no_new_inputs + 1
        added = 0
        votes = _votes(answer, new, config.concurrency)
        for text in new:
            fresh.append(text)
            if len(kept) >= config.n:
                break
            vote = next(votes)
            if vote.output is None:
                dropped[vote.reason or "no_output"] += 1
                logger.debug("input dropped (%s): %.80r votes %r", vote.reason, text, vote.samples)
                continue
            # An extractive answer is a copy of part of its input by definition.
            if problem := checks.output_problem(text, vote.output, extractive=spec.task_type == "extractive-qa"):
                dropped[problem] += 1
                continue
            # Appended one by one: a crash loses at most the pair in flight.
            append_jsonl(out_path, [{
                "input": text, "output": vote.output, "source": "generated", "model": llm.model,
                "template": "generate_inputs+answer_input", "topic": topic, "temperature": t,
                "answer_temperature": config.answer_temperature, "votes": vote.samples,
                "agreement": vote.agreement, "batch": batch}])
            kept.append(text)
            added += 1
        failed = 0 if added else failed + 1
        if progress:
            progress(min(len(kept), config.n), config.n)
    dropped.update(filters.dropped)
    if stopped:
        logger.warning("pair generation stopped at %d of %d pairs: %s", len(kept), config.n, stopped)
    return DataResult(out_path, len(kept), {}, dict(dropped), llm.usage.calls - calls_before,
                      llm.usage.tokens - tokens_before, stop_reason=stopped)
