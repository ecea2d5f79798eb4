"""Generate labelled training examples with an LLM: label-conditioned batches, annealed temperature,
validity and duplicate filters, appended to disk as they arrive."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m_engine.data import attributes
from p2m_engine.eval.analysis import FailureReport
from p2m_engine.errors import UnparseableAnswerError, UnsupportedTaskError
from p2m_engine.llm import LLM
from p2m_engine.runs import append_jsonl, read_jsonl
from p2m_engine.types import DataResult, Example, Progress, TaskSpec
from prompts import render

logger = logging.getLogger(__name__)


REFUSAL = re.compile(r"^(i'?m sorry|i am sorry|i can(no|')t|as an ai|sorry,|i apologi[sz]e)", re.IGNORECASE)
_NORM = re.compile(r"[\W_]+", re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case text with punctuation and white space removed: the key for duplicate checks."""
    return _NORM.sub("", text.lower())


@dataclass(frozen=True)
class SynthConfig:
    """How synthetic data is generated."""

    per_label: int = field(default=40, metadata={"help": "target number of generated examples per label"})
    batch_size: int = field(default=5, metadata={"help": "inputs asked for in one LLM call"})
    temperature_start: float = field(default=0.8, metadata={"help": "sampling temperature at the first batch"})
    temperature_end: float = field(default=1.3, metadata={"help": "temperature once the target is reached (annealed linearly)"})
    context_examples: int = field(default=3, metadata={"help": "earlier generated examples shown next to the demos"})
    min_chars: int = field(default=3, metadata={"help": "shorter inputs are dropped"})
    max_chars: int = field(default=300, metadata={"help": "longer inputs are dropped (also the schema's maxLength)"})
    temperature_boost: float = field(default=0.25, metadata={"help": "added to a label's temperature per batch that gave nothing new"})
    near_duplicate: float = field(default=0.6, metadata={"help": "word-3-gram Jaccard at or above which an input is a near copy"})
    max_batches_factor: int = field(default=3, metadata={"help": "a label gets at most this many times the batches it needs"})
    max_failed_batches: int = field(default=4, metadata={"help": "consecutive batches with no new example before a label stops"})
    seed: int = field(default=0, metadata={"help": "seed of the context sampling"})
    attributes: bool = field(default=True, metadata={"help": "condition each batch on a topic sampled for its label "
                                                               "(p2m_engine.data.attributes)"})
    concurrency: int = field(default=1, metadata={"help": "generation requests in flight together (1: one at a time, "
                                                          "each seeing every earlier answer; an API or vLLM server "
                                                          "answers many at once)"})


def shingles(text: str) -> frozenset[str]:
    """Word 3-grams of lower-cased text (the words themselves for texts under three words)."""
    words = _WORD.findall(text.lower())
    if len(words) < 3:
        return frozenset(words)
    return frozenset(" ".join(words[i : i + 3]) for i in range(len(words) - 2))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class TextChecks:
    """The checks every generated text gets, in order: length, refusal, format, leakage, duplicate, near copy of
    a banned text, near duplicate of a kept one. A subclass holds the state (`banned`, `seen`, `kept`,
    `dropped`, `_banned_shingles`), says its length `bounds` and what counts as `_near`."""

    banned: set[str]
    seen: set[str]
    kept: list[frozenset[str]]
    dropped: Counter[str]
    _banned_shingles: list[frozenset[str]]
    near_copy_reason = "near_copy_of_demo"

    @property
    def bounds(self) -> tuple[int, int]:
        raise NotImplementedError

    def _near(self, sh: frozenset[str], pool: list[frozenset[str]]) -> bool:
        raise NotImplementedError

    def _format_problem(self, text: str) -> str | None:
        return None

    def text_problem(self, text: str) -> str | None:
        """The reason to drop `text`, or None."""
        key = normalize(text)
        low, high = self.bounds
        if len(text) < low or not key:
            return "too_short"
        if len(text) > high:
            return "too_long"
        if REFUSAL.match(text.strip()):
            return "refusal"
        if problem := self._format_problem(text):
            return problem
        if key in self.banned:
            return "leak"
        if key in self.seen:
            return "duplicate"
        sh = shingles(text)
        if self._near(sh, self._banned_shingles):
            return self.near_copy_reason
        if self._near_kept(sh):
            return "near_duplicate"
        return None

    def _near_kept(self, sh: frozenset[str]) -> bool:
        """Whether `sh` is `_near` a kept text (a subclass may answer from an index instead of every pair)."""
        return self._near(sh, self.kept)

    def keep_or_count(self, text: str, reason: str | None) -> bool:
        """Remember `text` when `reason` is None (and return True); else count the reason."""
        if reason:
            self.dropped[reason] += 1
            logger.debug("dropped (%s): %.120r", reason, text)
            return False
        self.seen.add(normalize(text))
        self._remember(shingles(text))
        return True

    def _remember(self, sh: frozenset[str]) -> None:
        self.kept.append(sh)


@dataclass
class Filters(TextChecks):
    """Label validity, then the text checks; counts what each one dropped."""

    config: SynthConfig
    labels: tuple[str, ...]
    banned: set[str]  # normalised demos and held-out inputs: never training data
    banned_texts: list[str] = field(default_factory=list)  # demos, for the near-copy check
    seen: set[str] = field(default_factory=set)
    kept: list[frozenset[str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._banned_shingles = [shingles(t) for t in self.banned_texts]
        # Kept texts by 3-gram: a new text is compared only with the kept ones it shares a 3-gram with (all pairs
        # made a 10,000-example build quadratic: 57 examples/s against 187 at 1,000).
        self._postings: dict[str, list[int]] = {}
        self._sizes: list[int] = []
        for sh in self.kept:
            self._index(sh)

    def _index(self, sh: frozenset[str]) -> None:
        self._sizes.append(len(sh))
        for gram in sh:
            self._postings.setdefault(gram, []).append(len(self._sizes) - 1)

    def _remember(self, sh: frozenset[str]) -> None:
        self.kept.append(sh)
        self._index(sh)

    def _near_kept(self, sh: frozenset[str]) -> bool:
        """Jaccard from shared 3-gram counts: the same answer as `_near(sh, self.kept)`, without every pair."""
        shared: Counter[int] = Counter(i for gram in sh for i in self._postings.get(gram, ()))
        return any(n / (len(sh) + self._sizes[i] - n) >= self.config.near_duplicate for i, n in shared.items())

    @property
    def bounds(self) -> tuple[int, int]:
        return self.config.min_chars, self.config.max_chars

    def ban(self, texts: list[str]) -> None:
        """Also drop copies and near copies of `texts` from now on."""
        self.banned |= {normalize(t) for t in texts}
        self.banned_texts += texts
        self._banned_shingles += [shingles(t) for t in texts]

    def _near(self, sh: frozenset[str], pool: list[frozenset[str]]) -> bool:
        return any(jaccard(sh, other) >= self.config.near_duplicate for other in pool)

    def check(self, text: str, label: str) -> str | None:
        """Return the reason to drop (text, label), or None to keep it."""
        return "label_not_in_set" if label not in self.labels else self.text_problem(text)

    def accept(self, text: str, label: str) -> bool:
        return self.keep_or_count(text, self.check(text, label))


def _schema(n: int, max_chars: int) -> dict[str, object]:
    """n required string fields, not an array.

    Measured with the 0.5B model under llama.cpp's grammar: an unbounded array mostly came back with one
    item, and a bounded one (minItems/maxItems) made each call 20x slower (60 s instead of 3 s); n named
    fields gave n items per call at the array's speed.
    """
    keys = [f"input_{i}" for i in range(1, n + 1)]
    return {
        "type": "object",
        "properties": {k: {"type": "string", "maxLength": max_chars} for k in keys},
        "required": keys,
    }


def _inputs(answer: dict[str, object]) -> list[str]:
    """The generated inputs of an answer, in field order (an `inputs` list is accepted too)."""
    if isinstance(answer.get("inputs"), list):
        return [x for x in answer["inputs"] if isinstance(x, str)]  # type: ignore[union-attr]
    keys = sorted((k for k in answer if k.startswith("input_")), key=lambda k: int(k[6:]) if k[6:].isdigit() else 0)
    return [v for k in keys if isinstance(v := answer[k], str)]


@dataclass(frozen=True)
class Focus:
    """Targeted generation: more examples for the labels the student gets wrong, with its errors in view."""

    labels: tuple[str, ...]
    """The weak labels to generate for (no other label gets new examples)."""
    extra: int
    """New examples wanted per weak label, beyond those it already has."""
    confused_with: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """label -> the labels the student predicts instead of it."""
    missed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """label -> inputs of that label the student got wrong."""
    wrong: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """label -> inputs of other labels the student wrongly gave that label."""

    @classmethod
    def from_report(cls, report: FailureReport, extra: int) -> "Focus":
        """The focus for a failure report: its weak labels, confusions and error examples."""
        weak = report.weak_labels
        return cls(weak, extra, {x: tuple(report.confused_with(x)) for x in weak},
                   {x: tuple(e.input for e in report.missed(x)) for x in weak},
                   {x: tuple(e.input for e in report.mistaken_for(x)) for x in weak})

    def shown(self) -> list[str]:
        """Every error input shown to the teacher (generated data must not copy them)."""
        return [x for group in (self.missed, self.wrong) for texts in group.values() for x in texts]


def generate_targeted_examples(
    spec: TaskSpec,
    llm: LLM,
    out_path: Path,
    report: FailureReport,
    config: SynthConfig = SynthConfig(),
    *,
    extra: int = 0,
    exclude: list[str] = (),  # type: ignore[assignment]
    progress: Progress | None = None,
    call_id: str | None = None,
    guidance: str = "",
) -> DataResult:
    """Generate more examples for the weak labels of `report`, telling the teacher what the student confuses.

    Args:
        spec: the task.
        llm: the teacher.
        out_path: the generated-data JSONL, appended to (rows carry `"targeted": true`).
        report: the failure analysis of a validation split (never of the test split).
        config: generation settings.
        extra: new examples per weak label (0: half of `config.per_label`, at least one batch).
        exclude: held-out inputs that must never become training data.
        progress: called with (done, total) after each batch.
        call_id: identifies this call across a crash (see `generate_labelled_examples`).
        guidance: a short text added to every prompt, or "".

    Returns:
        As `generate_labelled_examples`; nothing is generated when the report has no weak label.
    """
    extra = extra or max(config.batch_size, config.per_label // 2)
    return generate_labelled_examples(spec, llm, out_path, config, exclude=exclude, progress=progress,
                             focus=Focus.from_report(report, extra), call_id=call_id, guidance=guidance)


@dataclass
class _Batch:
    """One generation request and what is needed to absorb its answer."""

    batch: int
    label: str
    n: int
    temperature: float
    topic: str | None
    messages: list[dict[str, str]]
    written: list[dict[str, Any]] | None
    """Rows of this batch already on disk (a replayed interrupted call), or None: ask the teacher."""
    variant: int


def _in_flight(prepare: Callable[[str, int], _Batch], ask: Callable[[_Batch], list[str] | None],
               absorb: Callable[..., None], wanting: Callable[[Counter[str]], list[str]], batches: Counter[str],
               concurrency: int, out_path: Path) -> None:
    """Keep `concurrency` batches in flight until no label wants more: a new batch is prepared as soon as the
    oldest answer is absorbed, so no batch waits for a round's slowest request.

    Answers are absorbed in the order asked, whatever order they come back in, so batch k is always prepared
    after exactly the batches before k - concurrency were absorbed: the same seed and concurrency ask the same
    prompts and keep the same data. Kept rows reach the disk in one append per `concurrency` batches (and when
    the call ends, however it ends); a crash loses only answers the cache already holds.
    """
    window: deque[tuple[_Batch, Future[list[str] | None]]] = deque()
    planned: Counter[str] = Counter()  # examples asked for, per label, not yet absorbed
    rows: list[dict[str, Any]] = []
    absorbed = 0
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        try:
            while True:
                while len(window) < concurrency and (labels := wanting(planned)):
                    label = min(labels, key=lambda lb: batches[lb])  # the label asked least so far; ties in order
                    b = prepare(label, planned[label])
                    planned[label] += b.n
                    window.append((b, executor.submit(ask, b)))
                if not window:
                    break
                b, answer = window.popleft()
                planned[b.label] -= b.n
                absorb(b, answer.result(), rows)
                absorbed += 1
                if rows and absorbed % concurrency == 0:
                    append_jsonl(out_path, rows)
                    rows.clear()
        finally:
            for _, pending in window:
                pending.cancel()
            if rows:
                append_jsonl(out_path, rows)


def generate_labelled_examples(
    spec: TaskSpec,
    llm: LLM,
    out_path: Path,
    config: SynthConfig = SynthConfig(),
    *,
    exclude: list[str] = (),  # type: ignore[assignment]
    progress: Progress | None = None,
    call_id: str | None = None,
    focus: Focus | None = None,
    have: dict[str, int] | None = None,
    guidance: str = "",
    topics: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
) -> DataResult:
    """Generate `config.per_label` examples for every label (less the real rows it `have`s) and append them to
    `out_path`.

    Rows already in `out_path` count towards the target, so a resumed run continues where it stopped.
    Rows marked with this same `call_id` were written by an interrupted run of this very call: it is
    replayed from its start, each batch already on disk taken back from the disk instead of asked again,
    so nothing is lost, duplicated or paid twice and the result is that of an uninterrupted call.
    With a `focus`, only its labels get new examples (`focus.extra` each beyond what they have), and the
    prompt shows the teacher the student's confusions and errors.

    Args:
        spec: a classification task with at least two labels.
        llm: the teacher.
        out_path: JSONL file, appended to; each row carries its provenance.
        config: generation settings.
        exclude: held-out inputs (test, validation) that must never become training data.
        progress: called with (done, total) after each batch.
        call_id: identifies this call across a crash (recorded in each row as `call`).
        focus: weak labels to generate more for, with what the student gets wrong on them.
        have: real rows per label (retrieved or teacher-labelled): the teacher writes only what they lack.
        guidance: a short text added to every prompt (what the planner wants more of), or "".
        topics: the topics batches are written about (the planner's), instead of the built-in list; a topic that
            clearly belongs to another label is still kept from a label.
        labels: only these labels get new examples (the planner's choice; empty: every label).

    Returns:
        Where the data is and how many examples each label has; what each filter dropped.

    Raises:
        UnsupportedTaskError: the task is not classification.
        LLMError: the LLM service keeps failing.
    """
    if spec.task_type != "classification":
        raise UnsupportedTaskError(f"Generating {spec.task_type} data is not supported yet; only classification.")
    banned = {normalize(e.input) for e in spec.examples} | {normalize(x) for x in exclude}
    filters = Filters(config, spec.labels, banned, [e.input for e in spec.examples])
    pool: dict[str, list[str]] = {label: [] for label in spec.labels}
    on_disk: dict[int, list[dict[str, str]]] = {}  # batch -> rows an interrupted run of this call already wrote
    strays: list[dict[str, str]] = []  # such rows the replay did not reach (the LLM answered otherwise this time)
    if out_path.exists():
        for row in read_jsonl(out_path):
            if call_id is not None and row.get("call") == call_id and isinstance(row.get("batch"), int):
                on_disk.setdefault(row["batch"], []).append(row)
            elif row.get("output") in pool and filters.accept(row["input"], row["output"]):
                pool[row["output"]].append(row["input"])
    filters.dropped.clear()
    if focus is not None:
        # The error inputs shown to the teacher are validation data: new examples must not copy them.
        filters.ban(focus.shown())
    calls_before, tokens_before = llm.usage.calls, llm.usage.tokens
    rng = random.Random(config.seed + (sum(len(v) for v in pool.values()) if focus else 0))
    if focus is None:
        target = {label: max(0, config.per_label - (have or {}).get(label, 0)) if not labels or label in labels else 0
                  for label in spec.labels}
        need = max(target.values(), default=0)
    else:
        target = {label: len(pool[label]) + focus.extra if label in focus.labels else 0 for label in spec.labels}
        need = focus.extra
    total = sum(target.values())
    failed: Counter[str] = Counter()
    batches: Counter[str] = Counter()
    # Every label gets a bounded number of calls, whatever the model answers.
    max_batches = config.max_batches_factor * -(-need // config.batch_size) + config.max_failed_batches
    batch = 0
    template = "generate_examples" if focus is None else "generate_targeted_examples"
    # Targeted batches are conditioned on the student's errors instead; topics have their own random stream,
    # so the context sampling stays what it was.
    chosen = {"topics": tuple(topics)} if topics else {}
    topics_of = (attributes.topics_by_label(spec.labels, spec.label_descriptions, **chosen)
                 if (config.attributes or topics) and focus is None else {})
    topic_rng = random.Random(config.seed)

    def done() -> int:
        return sum(min(len(v), target[k]) for k, v in pool.items())

    # Targeted generation anneals (and reports progress) over the new examples only.
    done0 = done() if focus is not None else 0

    def prepare(label: str, planned: int) -> _Batch:
        """The next batch of `label` (`planned`: examples already asked for it in this round, not yet back)."""
        nonlocal batch
        batch += 1
        batches[label] += 1
        t = config.temperature_start + (config.temperature_end - config.temperature_start) * (done() - done0) / max(total - done0, 1)
        # A label whose batches keep coming back as copies gets a hotter sampler.
        t = min(t + config.temperature_boost * failed[label], 2.0)
        # Only examples of the wanted label are shown: with other labels' examples in view the small
        # model copies them under the wrong label.
        shown = [e for e in spec.examples if e.output == label]
        earlier = [Example(x, label) for x in pool[label]]
        shown += rng.sample(earlier, min(config.context_examples, len(earlier)))
        rng.shuffle(shown)
        n = min(config.batch_size, target[label] - len(pool[label]) - planned)
        variables = {"instruction": spec.instruction, "labels": spec.labels, "examples": shown, "n": n, "label": label,
                     "descriptions": spec.label_descriptions, "guidance": guidance}
        topic = topic_rng.choice(topics_of[label]) if topics_of else None
        if focus is None:
            variables["topic"] = topic
        else:
            # Inputs of other labels are shown here (as what the label is not); the near-copy filter
            # drops any that the teacher copies back under this label.
            variables |= {"confused_labels": list(focus.confused_with.get(label, ())),
                          "missed_inputs": list(focus.missed.get(label, ())),
                          "wrong_inputs": list(focus.wrong.get(label, ()))}
        messages = [
            {"role": "system", "content": render("generate_examples_system", label=label)},
            {"role": "user", "content": render(template, **variables)},
        ]
        written = on_disk.pop(batch, None)
        if written is not None and any(r.get("output") != label for r in written):
            strays.extend(written)
            written = None
        if written is not None:
            # Replaying an interrupted run: this batch reached the disk before the crash.
            strays.extend(written[n:])
            written = written[:n]
        return _Batch(batch, label, n, round(t, 2), topic, messages, written, len(pool[label]) + planned)

    def ask(b: _Batch) -> list[str] | None:
        """The batch's inputs: from the disk when replayed, else from the teacher (None: an unparseable answer)."""
        if b.written is not None:
            return [str(r.get("input", "")) for r in b.written]
        try:
            answer = llm.call_tool(b.messages, "write_inputs", _schema(b.n, config.max_chars), temperature=b.temperature,
                                   max_tokens=min(2048, 32 + b.n * (config.max_chars // 3)), variant=b.variant)
        except UnparseableAnswerError:
            return None
        return [text.strip() for text in _inputs(answer)[: b.n]]

    def absorb(b: _Batch, texts: list[str] | None, rows: list[dict[str, Any]] | None = None) -> None:
        """Filter the batch's inputs into the pool and append the kept ones (with the batch id) to the file, or to
        `rows` when the caller writes a whole round at once."""
        if texts is None:
            failed[b.label] += 1
            return
        kept = [text for text in texts if filters.accept(text, b.label)]
        pool[b.label].extend(kept)
        if b.written is None:
            new = [{"input": text, "output": b.label, "source": "generated", "model": llm.model,
                    "temperature": b.temperature, "batch": b.batch, "template": template,
                    **({"topic": b.topic} if b.topic else {}), **({"targeted": True} if focus is not None else {}),
                    **({"call": call_id} if call_id is not None else {})} for text in kept]
            if rows is None:
                append_jsonl(out_path, new)
            else:
                rows.extend(new)
        failed[b.label] = 0 if kept else failed[b.label] + 1
        if progress:
            progress(done() - done0, total - done0)

    def wanting(planned: Counter[str]) -> list[str]:
        """Labels that still need examples beyond those asked for (`planned`), and may still be asked."""
        return [lb for lb in spec.labels if len(pool[lb]) + planned[lb] < target[lb]
                and failed[lb] < config.max_failed_batches and batches[lb] < max_batches]

    if config.concurrency <= 1:
        while labels := wanting(Counter()):
            for label in labels:  # one batch at a time: each sees every earlier answer
                b = prepare(label, 0)
                absorb(b, ask(b))
    else:
        _in_flight(prepare, ask, absorb, wanting, batches, config.concurrency, out_path)
    for row in strays + [r for rows in on_disk.values() for r in rows]:  # on disk: they count too
        if row.get("output") in pool and filters.accept(str(row.get("input", "")), str(row["output"])):
            pool[str(row["output"])].append(str(row["input"]))
    stopped = tuple(lb for lb in spec.labels if len(pool[lb]) < target[lb])
    for label in stopped:
        logger.warning("label %r stopped at %d of %d examples after %d batches (the model kept repeating itself)",
                       label, len(pool[label]), target[label], batches[label])
    return DataResult(out_path, sum(len(v) for v in pool.values()), {k: len(v) for k, v in pool.items()},
                      dict(filters.dropped), llm.usage.calls - calls_before, llm.usage.tokens - tokens_before, stopped,
                      f"labels {', '.join(stopped)} gave nothing new batch after batch" if stopped else None)
