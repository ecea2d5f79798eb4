"""Fine-tune a student: an encoder with a classification head, trained with transformers on CPU or GPU."""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from p2m_engine.students import pair_input
from p2m_engine.errors import TrainingError
from p2m_engine.types import Example, Progress, TrainResult

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainConfig:
    """How a student is trained. Saved next to the model it produced."""

    base_model: str = field(default="", metadata={"help": "path (or Hub id) of the base encoder"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training data"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    max_length: int = field(default=128, metadata={"help": "tokens per input; longer inputs are cut"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps with a rising learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "seed of shuffling and head initialisation"})
    bf16: str = field(default="auto", metadata={"help": "'auto' (when the CPU/GPU supports it), 'on' or 'off'"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: no limit; tests)"})
    min_steps: int = field(default=150, metadata={"help": "small datasets get more epochs, up to this many optimizer steps"})
    max_epochs: float = field(default=40.0, metadata={"help": "the most epochs min_steps may ask for"})
    pair: bool = field(default=True, metadata={"help": "encode inputs of two marked fields as a sentence pair "
                                                       "(p2m_engine.students.pair_input)"})
    prior: bool = field(default=True, metadata={"help": "shift a classifier to the label prior of the real rows "
                                                        "(p2m_engine.students.prior)"})
    soft: bool = field(default=True, metadata={"help": "without real labelled rows, train the frozen encoder with a head "
                                                       "on the judges' soft labels (p2m_engine.students.probe_student), not the "
                                                       "fine-tuned encoder on their hard labels"})
    contrastive: int = field(default=16, metadata={"help": "before the frozen-encoder student's head, tune the encoder on "
                                                             "pairs of the demos and this many of the judges' most confident "
                                                             "texts per label (p2m_engine.students.contrastive; 0: no tuning)"})
    consistency: int = field(default=5, metadata={"help": "folds of the label consistency check of the frozen-encoder "
                                                            "student: judged rows whose label a head trained on the other "
                                                            "folds does not give are dropped (0: no check)"})
    nearness: float = field(default=0.05, metadata={"help": "the frozen-encoder student weighs each hub text by its "
                                                             "nearness to the demos and label queries, decaying at this "
                                                             "cosine scale below the judged texts' median "
                                                             "(probe_student.nearness_weights; 0: every text weighs 1)"})
    rival: bool = field(default=True, metadata={"help": "also train a second student and keep whichever scores higher "
                                                        "on validation: with real labelled rows the frozen encoder with "
                                                        "a head; for generation the teacher's own weights with LoRA, "
                                                        "when they are local (p2m_engine.students.student_choice)"})
    teacher_steps: int = field(default=0, metadata={"help": "optimizer steps of the generation rival fine-tuned from "
                                                            "the teacher's own weights (0: no such rival)"})
    cloze: int = field(default=1500, metadata={"help": "extractive QA: cloze questions made from hub passages, trained "
                                                       "on beside the task's rows (p2m_engine.data.cloze; 0: none)"})


def effective_epochs(n_train: int, config: TrainConfig) -> float:
    """Epochs to run: the configured ones, raised for small datasets so the optimizer takes min_steps steps.

    A few dozen generated examples at 16 per batch are 4 steps an epoch: 3 epochs barely move the head.
    """
    steps_per_epoch = max(1, -(-n_train // config.batch_size))
    wanted = config.min_steps / steps_per_epoch
    return float(min(max(config.epochs, wanted), max(config.epochs, config.max_epochs)))


def bf16_supported() -> bool:
    """bf16 speeds up training only on hardware with native bf16 (AVX512_BF16/AMX CPUs, Ampere+ GPUs)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check())


def split_validation(examples: list[Example], fraction: float = 0.15, seed: int = 0, min_val: int = 2,
                     stratify: bool = True) -> tuple[list[Example], list[Example]]:
    """A train/validation split, stratified by output for classification: every label keeps a training example.

    With `stratify=False` (free-text outputs, which rarely repeat) the rows are split as one group.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.output if stratify else "", []).append(e)
    train, val = [], []
    for rows in by_label.values():
        rows = rows[:]
        rng.shuffle(rows)
        n_val = min(len(rows) - 1, max(1 if len(rows) >= min_val else 0, round(len(rows) * fraction)))
        val += rows[:n_val]
        train += rows[n_val:]
    rng.shuffle(train)
    return train, val


def train_classifier(
    train: list[Example],
    val: list[Example],
    labels: tuple[str, ...],
    out_dir: Path,
    config: TrainConfig,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """Fine-tune `config.base_model` with a classification head; keep the checkpoint best on `val`.

    Args:
        train: training examples (outputs must be in `labels`).
        val: validation examples used to pick the best epoch.
        labels: the label names, in the order of the head's outputs.
        out_dir: where the model (save_pretrained format, with tokenizer) is written.
        config: training settings.
        progress: called with (step, total_steps).

    Returns:
        The model folder and its training figures.

    Raises:
        TrainingError: fewer than two labels in the training data, or an unknown label.
    """
    import torch
    from datasets import Dataset
    from datasets import disable_progress_bars
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback, Trainer, set_seed

    disable_progress_bars()

    present = {e.output for e in train}
    if len(present) < 2:
        raise TrainingError(f"Training needs examples of at least two labels; got {sorted(present)}.")
    unknown = present - set(labels)
    if unknown:
        raise TrainingError(f"Training examples have labels outside the task's label set: {sorted(unknown)}.")
    if not config.base_model:
        raise TrainingError("No base model: run search_models first or pass --student.")
    set_seed(config.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    label2id = {label: i for i, label in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(config.base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        config.base_model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
        ignore_mismatched_sizes=True,
    )

    pair = pair_input.pair_template([r.input for r in train]) if config.pair else None

    def encode(rows: list[Example]) -> Dataset:
        ds = Dataset.from_dict({"text": [r.input for r in rows], "label": [label2id[r.output] for r in rows]})
        return ds.map(lambda b: pair_input.tokenize(tok, b["text"], pair, truncation=True, max_length=config.max_length),
                      batched=True, remove_columns=["text"])

    def compute_metrics(pred: Any) -> dict[str, float]:
        from p2m_engine.eval.metrics import classification_metrics

        ids = pred.predictions.argmax(-1)
        return classification_metrics([labels[i] for i in pred.label_ids], [labels[i] for i in ids])

    use_bf16 = config.bf16 == "on" or (config.bf16 == "auto" and bf16_supported())
    has_val = len(val) > 0
    steps_per_epoch = -(-len(train) // config.batch_size)
    epochs = effective_epochs(len(train), config)
    total_steps = config.max_steps if config.max_steps > 0 else int(steps_per_epoch * epochs)
    ckpt_dir = out_dir.parent / (out_dir.name + "-checkpoints")
    args = training_arguments(config, ckpt_dir, epochs=epochs, total_steps=total_steps, has_val=has_val,
                              metric="accuracy", bf16=use_bf16, eval_batch_size=64,
                              eval_strategy="epoch" if has_val else "no", save_strategy="epoch" if has_val else "no")

    started = time.monotonic()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(train),
        eval_dataset=encode(val) if has_val else None,
        processing_class=tok,
        compute_metrics=compute_metrics,
        callbacks=[progress_callback(progress)],
    )
    # Progress goes to the caller's callback; the loss log is kept in the result, not printed.
    trainer.remove_callback(PrinterCallback)
    out = trainer.train()
    val_score = float("nan")
    if has_val:
        val_score = float(trainer.evaluate()["eval_accuracy"])
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(out_dir))
    tok.save_pretrained(str(out_dir))
    pair_input.save(pair, out_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the checkpoints of the best epoch are copied out
    return TrainResult(out_dir, float(out.training_loss), val_score, len(train), len(val), epochs,
                       time.monotonic() - started,
                       {**asdict(config), "bf16_used": use_bf16, "pair_fields": list(pair.names) if pair else None,
                        "log_history": trainer.state.log_history})


def training_arguments(config: TrainConfig, ckpt_dir: Path, *, epochs: float, total_steps: int, has_val: bool,
                       metric: str, bf16: bool, eval_batch_size: int, args_class: Any = None, **overrides: Any) -> Any:
    """The `TrainingArguments` every `Trainer`-based student shares: CPU-safe, quiet, the best checkpoint kept.

    `overrides` set the evaluation/save schedule (per epoch for classification, every N steps for QA).
    `args_class`: a `TrainingArguments` subclass to build instead (TRL's `SFTConfig` for the generator).
    """
    import torch
    from transformers import TrainingArguments

    return (args_class or TrainingArguments)(
        output_dir=str(ckpt_dir),
        num_train_epochs=epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=eval_batch_size,
        warmup_steps=int(config.warmup_ratio * total_steps),  # transformers 5 takes warmup in steps only
        weight_decay=config.weight_decay,
        load_best_model_at_end=has_val,
        metric_for_best_model=metric,
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=10,
        report_to="none",
        seed=config.seed,
        bf16=bf16,
        # transformers 5.24 refuses bf16 without a GPU unless training is declared CPU-only (AVX512-BF16/AMX
        # CPUs have it).
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        **overrides,
    )


def progress_callback(progress: Progress | None) -> Any:
    """A `TrainerCallback` that reports (step, total steps) to `progress` after every step."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if progress:
                progress(state.global_step, state.max_steps)

    return _Progress()
