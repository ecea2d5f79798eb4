"""Which student a build keeps when two can be trained on the same rows: the one that scores higher on the same
validation rows. Nothing about the task is assumed; the measurement decides.

Classification with real labelled rows: the fine-tuned encoder, or the same encoder frozen with a linear head.
Fine-tuning usually wins with a few thousand rows of the task's own kind. It loses where the rows are few or
far from what the encoder learnt in pre-training: on the paraphrase task with its own 1,000 training rows the
fine-tuned encoder reached 68.0 and the frozen encoder with a head on pair features 73.3 (dev as test).

Generation: the small packaged causal LM, or the teacher's own weights fine-tuned with LoRA on the same rows
(Self-Guide, arXiv 2407.12874: a model trained on its own filtered outputs gained 14.5 EM over prompting it).
The small one is kept unless the teacher-born one scores strictly higher: it is several times smaller and faster.

Extractive QA: the encoder with a span head, or the same teacher-born rival writing the answer after the question
and its context. The span head is kept unless the rival's token F1 on the validation rows is strictly higher.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from p2m_engine.students import pair_input, probe_student
from p2m_engine.students.probe_student import ProbeConfig
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example, Progress, TrainResult

FINE_TUNED = "fine-tuned"
PROBE = "probe"
FROM_TEACHER = "from-teacher"


@dataclass(frozen=True)
class Choice:
    """The student kept and how the two compared."""

    result: TrainResult
    """The kept student (its folder is the fine-tuned student's folder, whichever won)."""
    student: str
    """FINE_TUNED (the first student, whichever kind), PROBE or FROM_TEACHER."""
    scores: dict[str, float]
    """Validation score of each student tried."""

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.student, "val_scores": self.scores}


def _swap(first: TrainResult, rival: TrainResult, rival_dir: Path, student: str, scores: dict[str, float],
          config: dict[str, Any]) -> Choice:
    """The rival takes the first student's folder (the build knows one folder per iteration), with `config` as
    the settings its record keeps."""
    shutil.rmtree(first.model_dir)
    rival_dir.rename(first.model_dir)
    return Choice(replace(rival, model_dir=first.model_dir, config=config), student, scores)


def keep_better(fine_tuned: TrainResult, train: list[Example], val: list[Example], labels: tuple[str, ...],
                encoder: Path, config: ProbeConfig = ProbeConfig()) -> Choice:
    """Train the frozen-encoder rival on `train` and keep it in place of `fine_tuned` only if it scores strictly
    higher on `val` (accuracy, the measure of both). Needs at least two labels in `train` and a validation set.

    Args:
        fine_tuned: the fine-tuned classifier, already trained and scored on `val`.
        train: its training rows (hard labels).
        val: its validation rows.
        labels: the task's labels.
        encoder: the encoder folder the fine-tuned student started from (the rival reads with it, frozen).
        config: the head's settings.
    """
    rows = [e for e in train if e.output in labels]
    if not val or len({e.output for e in rows}) < 2 or np.isnan(fine_tuned.val_score):
        return Choice(fine_tuned, FINE_TUNED, {FINE_TUNED: fine_tuned.val_score})
    pair = pair_input.pair_template([e.input for e in rows])
    targets = np.eye(len(labels))[[labels.index(e.output) for e in rows]]
    rival_dir = fine_tuned.model_dir.with_name(fine_tuned.model_dir.name + "-probe")
    shutil.rmtree(rival_dir, ignore_errors=True)
    rival = probe_student.train_probe_student([e.input for e in rows], targets, labels, rival_dir, encoder, config,
                                              val=[(e.input, e.output) for e in val], pair=pair)
    scores = {FINE_TUNED: round(fine_tuned.val_score, 4), PROBE: round(rival.val_score, 4)}
    if not rival.val_score > fine_tuned.val_score:
        shutil.rmtree(rival_dir, ignore_errors=True)
        return Choice(fine_tuned, FINE_TUNED, scores)
    # The fine-tuned student's settings stay in the record (base model, epochs): `p2m train` starts from them.
    return _swap(fine_tuned, rival, rival_dir, PROBE, scores, {**fine_tuned.config, **rival.config})


def _train_rival(first: TrainResult, train: list[Example], val: list[Example], config: TrainConfig, instruction: str,
                 progress: Progress | None, max_steps: int) -> tuple[Path, TrainResult]:
    """The teacher-born rival (`config.base_model`, LoRA) trained beside `first`, in `first`'s folder name +
    "-teacher", for at most `max_steps` steps (fewer when `config.max_steps` sets fewer)."""
    from p2m_engine.students.textgen import GenerationConfig, train_generator

    rival_dir = first.model_dir.with_name(first.model_dir.name + "-teacher")
    shutil.rmtree(rival_dir, ignore_errors=True)
    steps = min(config.max_steps, max_steps) if config.max_steps > 0 else max_steps
    return rival_dir, train_generator(train, val, rival_dir, replace(config, max_steps=steps), progress,
                                      GenerationConfig(lora="on"), instruction)


# Optimizer steps of the teacher-born rival: on 2 CPU cores a step of the 0.5B teacher with LoRA takes
# about 40 s (MCoNaLa, batch of 16), and a model that already does the task needs few steps to learn its format (Self-Guide).
RIVAL_MAX_STEPS = 40
# Without a GPU, half as many: on temporal's 224 rows 20 steps took 494 s with validation, and the rival scored
# 41.1 chrF++ on the 260 dev rows against the small student's 35.2 (benchmarks/results/gen-rival/replay.py); the
# build with it scored 41.6 against its teacher's 32.0 on the same rows (benchmarks/results/rival-temporal/).
RIVAL_CPU_STEPS = 20


def keep_better_generator(small: TrainResult, train: list[Example], val: list[Example], config: TrainConfig,
                          teacher_base: Path, instruction: str, progress: Progress | None = None,
                          max_steps: int = RIVAL_MAX_STEPS) -> Choice:
    """Fine-tune the teacher's own weights (`teacher_base`, a causal LM folder) with LoRA on the rows `small`
    was trained on, and keep it in place of `small` only if its chrF++ on the same validation sample is strictly
    higher. The kept folder's record names the base model it was trained from.

    Args:
        small: the generative student already trained (from the packaged small LM), scored on validation.
        train, val: its rows (the same held-out split is drawn for the rival: same seed).
        config: its training settings (the rival uses them with its own base model).
        teacher_base: the teacher's weights as a transformers folder (packaged.ensure_teacher_lm).
        instruction: the task instruction both students are prompted with.
        max_steps: the rival's optimizer steps (fewer when `config.max_steps` sets fewer).
    """
    if np.isnan(small.val_score) or Path(small.config.get("base_model", "")) == Path(teacher_base):
        return Choice(small, FINE_TUNED, {FINE_TUNED: small.val_score})
    rival_dir, rival = _train_rival(small, train, val, replace(config, base_model=str(teacher_base)), instruction,
                                    progress, max_steps)
    scores = {FINE_TUNED: round(small.val_score, 4), FROM_TEACHER: round(rival.val_score, 4)}
    if not rival.val_score > small.val_score:
        shutil.rmtree(rival_dir, ignore_errors=True)
        return Choice(small, FINE_TUNED, scores)
    # The record keeps the rival's own settings: the folder holds the teacher-born weights, and `p2m train`
    # starts again from the teacher's.
    return _swap(small, rival, rival_dir, FROM_TEACHER, scores, rival.config)


# The QA rival reads the question and its context: 384 input tokens (the span head's window) instead of 128. At 16
# rows a batch the 0.5B teacher's float32 logits and activations outgrew 24 GiB on a CPU (killed by the kernel);
# at 8 rows, 20 steps took 387 s on 2 cores and the rival matched its teacher's 34.0 exact match on SQuAD's first
# 50 dev rows, where the span head trained on the same build's data scored 22.0 (benchmarks/results/qa-rival/).
QA_RIVAL_LENGTH = 384
QA_RIVAL_BATCH = 8


def keep_better_reader(span: TrainResult, train: list[Example], val: list[Example], config: TrainConfig,
                       teacher_base: Path, instruction: str, progress: Progress | None = None,
                       max_steps: int = RIVAL_MAX_STEPS) -> Choice:
    """Fine-tune the teacher's own weights with LoRA to write the answer of each (question, context) input of
    `train`, and keep it in place of the span student `span` only if its token F1 on `val` is strictly higher.

    Args:
        span: the span student already trained, scored on `val` (its record holds `val_f1`).
        train: the rows it trained on (cloze questions included).
        val: its validation rows (real rows of the task's kind, never cloze ones).
        config: its training settings (the rival takes their seed and epochs, with its own length and batch).
        teacher_base: the teacher's weights as a transformers folder (packaged.ensure_teacher_lm).
        instruction: the task instruction the rival is prompted with.
        max_steps: the rival's optimizer steps.
    """
    from p2m_engine.eval.metrics import squad_metrics
    from p2m_engine.students.textgen import generate

    span_f1 = span.config.get("val_f1", float("nan"))
    if not val or np.isnan(span_f1):
        return Choice(span, FINE_TUNED, {FINE_TUNED: span_f1})
    rival_dir, rival = _train_rival(span, train, val, replace(config, base_model=str(teacher_base),
                                                              max_length=QA_RIVAL_LENGTH, batch_size=QA_RIVAL_BATCH),
                                    instruction, progress, max_steps)
    measured = squad_metrics([e.output for e in val], generate(rival_dir, [e.input for e in val]))
    scores = {FINE_TUNED: round(span_f1, 4), FROM_TEACHER: round(measured["f1"], 4)}
    if not measured["f1"] > span_f1:
        shutil.rmtree(rival_dir, ignore_errors=True)
        return Choice(span, FINE_TUNED, scores)
    # Its validation score is exact match, as the span student's is (the task's metric); F1 decided.
    return _swap(span, replace(rival, val_score=measured["exact_match"]), rival_dir, FROM_TEACHER, scores,
                 {**rival.config, "val_f1": measured["f1"]})
