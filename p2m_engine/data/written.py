"""Inputs the teacher writes like the demonstrations, without their labels, for the judges to label.

Once a task's own dataset is missing, the hub often holds no text of its kind (tweets about feelings, SMS), and
the judges then label text unlike the test inputs: with 3,600 of its own unlabelled inputs the unseen emotion
task rose from 40.8 to 49.5 (p2m_engine.data.unlabelled). A user without such a file still has the teacher, and
writing an input of a given kind is within a 0.5B model's reach where writing it *for a given label* is not (the
labels of its examples were the weak part: generated-only data never beat the teacher). So the teacher is asked
for inputs only, in batches conditioned on a sampled topic with earlier inputs in context (AttrPrompt; Prompt2Model's
in-context sampling), and the judges that are measured on the demonstrations label them with the hub's text
(p2m_engine.data.labelling). GAL (arXiv 2106.06168) labels model-written task inputs with a classifier the same way.

Writing is worth its minutes only where the teacher's inputs are nearer to the task than the hub's text. With the
unseen emotion task the first 16 written inputs' median nearness to the task was 1.13, 1.04 and 0.86 times that of
the hub texts the judges label (seeds 1, 0, 2; writing moved the score +3.1, +0.8, -0.9); with sms_spam, trec and
ag_news it was 0.34-0.74 times, few written inputs were taken, and the scores moved within their seed spread for
4.5 minutes a build. So the first `probe` inputs are compared with the hub's (`nearer_than`) and the teacher stops
there when they are farther.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from p2m_engine.data.attributes import TOPICS
from p2m_engine.data.input_fields import format_markers
from p2m_engine.data.pairs import InputFilters, PairsConfig, _fields, _input_schema, input_limit
from p2m_engine.data.pool import WRITTEN, embed_texts, nearness
from p2m_engine.data.synth import normalize
from p2m_engine.errors import UnparseableAnswerError
from p2m_engine.llm import LLM
from p2m_engine.llm.pricing import WRITE_BATCH, WRITE_BATCHES_FACTOR
from p2m_engine.runs import append_jsonl, read_jsonl
from p2m_engine.types import Progress, TaskSpec
from prompts import render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteConfig:
    """How the teacher writes unlabelled inputs."""

    n: int = field(default=60, metadata={"help": "inputs written (0: none)"})
    batch_size: int = field(default=WRITE_BATCH, metadata={"help": "inputs asked for in one call"})
    temperature_start: float = field(default=0.8, metadata={"help": "sampling temperature of the first batch"})
    temperature_end: float = field(default=1.3, metadata={"help": "temperature once `n` inputs are kept "
                                                                  "(annealed linearly)"})
    context_examples: int = field(default=3, metadata={"help": "earlier written inputs shown beside the demos"})
    max_batches_factor: int = field(default=WRITE_BATCHES_FACTOR,
                                    metadata={"help": "at most this many times the batches `n` needs"})
    seed: int = field(default=0, metadata={"help": "seed of the topics and the context sampling"})
    probe: int = field(default=16, metadata={"help": "inputs written before `check` decides whether the teacher "
                                                     "goes on (two batches: eight inputs give a noisy median)"})


@dataclass(frozen=True)
class WriteResult:
    """What `write_inputs` appended and why it dropped the rest."""

    path: Path
    count: int
    dropped: dict[str, int]
    llm_calls: int = 0
    stopped: str = ""
    """Why the teacher stopped before `n` inputs when `check` said so (empty otherwise)."""


def write_inputs(spec: TaskSpec, llm: LLM, out_path: Path, config: WriteConfig = WriteConfig(), *,
                 exclude: set[str] | None = None, progress: Progress | None = None,
                 check: Callable[[list[str]], str] | None = None) -> WriteResult:
    """Have the teacher write up to `config.n` new inputs like the demonstrations' and append each batch's kept
    ones to `out_path` (JSONL: `input`, `source` `written` (pool.WRITTEN), the model, topic, temperature and
    batch); rows already there (a resumed build) count towards `n` and are never written again.

    An input is dropped when it is too short or long for the demos' lengths, lacks a field marker every demo has
    (`Sentence 1:`), or is a copy or near copy of a demo, of a held-out input or of an earlier written one
    (pairs.InputFilters, the checks generated inputs get).

    Args:
        spec: a task with demonstrations.
        llm: the teacher.
        out_path: the JSONL file appended to.
        config: how many inputs and how they are sampled.
        exclude: normalized held-out inputs (test, validation): never written as training text.
        progress: called with (kept, n) after each batch.
        check: called once with the inputs kept when `config.probe` of them are (a resumed build past that
            point: before anything is asked); a non-empty answer says why writing stops there (`nearer_than`).
    """
    demos = [e.input for e in spec.examples]
    if config.n <= 0 or not demos:
        return WriteResult(out_path, 0, {})
    checks = PairsConfig()
    limit = input_limit(spec, checks)
    banned = {normalize(d) for d in demos} | set(exclude or ())
    filters = InputFilters(checks, limit, banned, list(demos), format_markers(demos))
    kept = [r["input"] for r in (read_jsonl(out_path) if out_path.is_file() else [])
            if isinstance(r.get("input"), str) and filters.accept(r["input"])]
    filters.dropped.clear()
    rng = random.Random(config.seed)
    calls0 = llm.usage.calls
    dropped: Counter[str] = Counter()
    max_batches = config.max_batches_factor * -(-config.n // config.batch_size)
    batch = len(kept) // config.batch_size  # a resumed build asks new prompts, not the cached ones again
    start = batch
    stopped = ""
    checked = check is None or config.probe <= 0
    while len(kept) < config.n and batch - start < max_batches:
        if not checked and len(kept) >= config.probe:
            checked = True
            stopped = check(list(kept))  # type: ignore[misc]
            if stopped:
                break
        batch += 1
        t = round(config.temperature_start + (config.temperature_end - config.temperature_start)
                  * len(kept) / config.n, 2)
        shown = demos + rng.sample(kept, min(config.context_examples, len(kept)))
        rng.shuffle(shown)
        topic = rng.choice(TOPICS)
        # Shown as JSON strings, as the answer writes them (pairs.generate_pairs does the same).
        messages = [{"role": "system", "content": render("generate_inputs_system", max_chars=limit)},
                    {"role": "user", "content": render("generate_inputs", instruction=spec.instruction,
                                                       inputs=[json.dumps(x, ensure_ascii=False) for x in shown],
                                                       n=config.batch_size, topic=topic, lines=0)}]
        try:
            reply = llm.call_tool(messages, "write_inputs", _input_schema(config.batch_size, limit), temperature=t,
                                  max_tokens=32 + config.batch_size * (limit // 3 + 8), variant=batch)
        except UnparseableAnswerError:
            dropped["unparseable_batch"] += 1
            continue
        new = [x for x in (x.strip() for x in _fields(reply, "input")[: config.batch_size]) if filters.accept(x)]
        new = new[: config.n - len(kept)]
        append_jsonl(out_path, [{"input": x, "source": WRITTEN, "model": llm.model, "topic": topic, "temperature": t,
                                 "batch": batch} for x in new])
        kept += new
        if progress:
            progress(len(kept), config.n)
    dropped.update(filters.dropped)
    if stopped:
        logger.info("the teacher stopped writing at %d inputs: %s", len(kept), stopped)
    elif len(kept) < config.n:
        logger.warning("the teacher wrote %d of %d inputs in %d batches", len(kept), config.n, batch - start)
    return WriteResult(out_path, len(kept), dict(dropped), llm.usage.calls - calls0, stopped)


def nearer_than(queries: np.ndarray, reference: float, measured: dict[str, float] | None = None
                ) -> Callable[[list[str]], str]:
    """A `check` for `write_inputs`: the teacher goes on only while its inputs' median nearness to the task is at
    least `reference`, the median nearness of the hub texts the judges label without them (their inputs would be
    taken in place of nearer hub text, or not at all). Both medians go into `measured`, when given."""
    def check(texts: list[str]) -> str:
        median = float(np.median(nearness(embed_texts(texts), queries)))
        if measured is not None:
            measured.update(written=round(median, 4), hub=round(reference, 4))
        if median >= reference:
            return ""
        return (f"the first {len(texts)} inputs' median nearness to the task is {median:.3f}, below the "
                f"{reference:.3f} of the hub texts the judges label")

    return check
