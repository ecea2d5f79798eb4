"""Extractive QA student: an encoder with a span head (start/end logits), fine-tuned with transformers on
question/context windows (long contexts are cut into overlapping windows), and the standard answer post-processing
over all windows of an input. The saved folder is a plain `AutoModelForQuestionAnswering` + tokenizer."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from p2m_engine.errors import ModelError, TrainingError
from p2m_engine.eval.metrics import normalize_answer, squad_metrics
from p2m_engine.students.qa_text import QAItem, Window, best_answer, field_names, split_question_context, to_items
from p2m_engine.runs import write_jsonl
from p2m_engine.students.train import TrainConfig, bf16_supported, effective_epochs, progress_callback, training_arguments
from p2m_engine.types import EvalReport, Example, Progress, TrainResult

logger = logging.getLogger(__name__)

MIN_VAL = 5  # fewer validation rows than this cannot pick a checkpoint
QA_META = "p2m_qa.json"  # beside the model: how inputs were split and windowed, so prediction does the same


@dataclass(frozen=True)
class QAConfig:
    """How inputs are windowed and answers decoded. Saved next to the model (p2m_qa.json)."""

    max_length: int = field(default=384, metadata={"help": "tokens per window (question + context part)"})
    doc_stride: int = field(default=128, metadata={"help": "tokens shared by consecutive windows of a long context"})
    max_answer_tokens: int = field(default=30, metadata={"help": "longest answer span, in tokens"})
    n_best: int = field(default=20, metadata={"help": "start and end candidates paired per window"})
    max_evals: int = field(default=10, metadata={"help": "validation passes (and checkpoints) per training run"})


@dataclass
class Features:
    """The windows of a list of items: model inputs, the item each window came from, and per-token context
    offsets (None outside the context)."""

    inputs: dict[str, list[list[int]]]
    sample: list[int]
    offsets: list[list[tuple[int, int] | None]]
    start_positions: list[int] = field(default_factory=list)
    end_positions: list[int] = field(default_factory=list)


def _clip_question(tok: Any, question: str, max_tokens: int) -> str:
    """Cut a question to `max_tokens` tokens so every window keeps room for the context."""
    enc = tok(question, add_special_tokens=False, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
    if len(enc["input_ids"]) < max_tokens:
        return question
    return question[: enc["offset_mapping"][-1][1]]


def encode(tok: Any, items: Sequence[QAItem], qa: QAConfig, with_labels: bool) -> Features:
    """Tokenize (question, context) pairs into overlapping windows of the context (the Hugging Face recipe).

    With labels, each window's start/end token of the answer is set; a window that does not hold the whole
    answer points both at the CLS token (index 0), meaning "not in this window".
    """
    max_q = min(qa.max_length // 2, qa.max_length - qa.doc_stride - 4)
    questions = [_clip_question(tok, it.question, max_q) for it in items]
    enc = tok(questions, [it.context for it in items], truncation="only_second", max_length=qa.max_length,
              stride=qa.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    feats = Features({k: list(enc[k]) for k in keys}, list(enc["overflow_to_sample_mapping"]), [])
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq = enc.sequence_ids(i)
        feats.offsets.append([tuple(o) if s == 1 else None for o, s in zip(offsets, seq)])  # type: ignore[misc]
        if not with_labels:
            continue
        item = items[feats.sample[i]]
        first = seq.index(1)
        last = len(seq) - 1 - seq[::-1].index(1)
        a_start, a_end = item.answer_start, item.answer_start + len(item.answer)
        if not (offsets[first][0] <= a_start and offsets[last][1] >= a_end):
            feats.start_positions.append(0)
            feats.end_positions.append(0)
            continue
        s = first
        while s <= last and offsets[s][0] <= a_start:
            s += 1
        e = last
        while e >= first and offsets[e][1] >= a_end:
            e -= 1
        feats.start_positions.append(s - 1)
        feats.end_positions.append(e + 1)
    return feats


def decode(feats: Features, contexts: Sequence[str], start_logits: Any, end_logits: Any, qa: QAConfig) -> list[str]:
    """The best answer of every item from the logits of all its windows."""
    windows: list[list[Window]] = [[] for _ in contexts]
    for i, item in enumerate(feats.sample):
        n = len(feats.offsets[i])
        windows[item].append(Window(list(start_logits[i][:n]), list(end_logits[i][:n]), feats.offsets[i]))
    return [best_answer(w, c, qa.n_best, qa.max_answer_tokens) for w, c in zip(windows, contexts)]


def train_qa(train: list[Example], val: list[Example], out_dir: Path, config: TrainConfig,
             *, progress: Progress | None = None, qa: QAConfig = QAConfig()) -> TrainResult:
    """Fine-tune `config.base_model` with a span head; keep the checkpoint with the best validation F1.

    Inputs are split into question and context (`qa_text.split_question_context`, field names learned from the
    training inputs); rows whose answer is not in their context are dropped and counted. Validation runs the full
    answer post-processing (SQuAD EM and F1); F1 picks the checkpoint because it is less noisy than exact match on
    a few dozen rows. With fewer than MIN_VAL validation rows (a stratified split by output gives none when every
    answer is different), a tenth of the training rows is held back for validation (when there are 10+).

    Args:
        train: examples whose output is a span of the input.
        val: validation examples.
        out_dir: where the model and tokenizer are written (save_pretrained format) with p2m_qa.json.
        config: training settings (base_model, epochs, learning rate, batch size, seed, bf16...).
        progress: called with (step, total_steps).
        qa: windowing and decoding settings.

    Returns:
        The model folder, training loss, validation exact match (val_score) and, in config, the validation F1,
        the dropped-row counts and the loss log.

    Raises:
        TrainingError: no base model, or no training row has its answer in its context.
    """
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, PrinterCallback, Trainer, set_seed

    disable_progress_bars()
    if not config.base_model:
        raise TrainingError("No base model: run search_models first or pass --student.")
    names = field_names(e.input for e in train)
    train_items, dropped_train = to_items(train, names)
    val_items, dropped_val = to_items(val, names)
    if not train_items:
        raise TrainingError(f"None of the {len(train)} training examples has its answer inside its context; an "
                            "extractive QA student needs outputs copied from the input.")
    held = 0
    if len(val_items) < MIN_VAL and len(train_items) >= 10:
        random.Random(config.seed).shuffle(train_items)
        held = max(1, len(train_items) // 10)
        val_items, train_items = val_items + train_items[:held], train_items[held:]
    set_seed(config.seed)
    tok = AutoTokenizer.from_pretrained(config.base_model)
    if not getattr(tok, "is_fast", False):
        raise TrainingError(f"{config.base_model} has no fast tokenizer; span answers need its character offsets.")
    model = AutoModelForQuestionAnswering.from_pretrained(config.base_model)

    def dataset(feats: Features) -> Dataset:
        return Dataset.from_dict({**feats.inputs, "start_positions": feats.start_positions,
                                  "end_positions": feats.end_positions})

    train_feats = encode(tok, train_items, qa, with_labels=True)
    val_feats = encode(tok, val_items, qa, with_labels=True) if val_items else None

    def compute_metrics(pred: Any) -> dict[str, float]:
        assert val_feats is not None
        start, end = pred.predictions[:2]
        answers = decode(val_feats, [it.context for it in val_items], start, end, qa)
        return squad_metrics([it.answer for it in val_items], answers)

    use_bf16 = config.bf16 == "on" or (config.bf16 == "auto" and bf16_supported())
    has_val = val_feats is not None
    n_windows = len(train_feats.sample)
    steps_per_epoch = -(-n_windows // config.batch_size)
    epochs = effective_epochs(n_windows, config)
    total_steps = config.max_steps if config.max_steps > 0 else max(1, int(steps_per_epoch * epochs))
    # Evaluate (and checkpoint) at most qa.max_evals times: small data gets many short epochs.
    eval_steps = max(1, math.ceil(total_steps / max(1, min(qa.max_evals, round(epochs)))))
    ckpt_dir = out_dir.parent / (out_dir.name + "-checkpoints")
    args = training_arguments(config, ckpt_dir, epochs=epochs, total_steps=total_steps, has_val=has_val, metric="f1",
                              bf16=use_bf16, eval_batch_size=32, eval_strategy="steps" if has_val else "no",
                              eval_steps=eval_steps, save_strategy="steps" if has_val else "no", save_steps=eval_steps)

    started = time.monotonic()
    trainer = Trainer(model=model, args=args, train_dataset=dataset(train_feats),
                      eval_dataset=dataset(val_feats) if val_feats else None, processing_class=tok,
                      compute_metrics=compute_metrics if has_val else None, callbacks=[progress_callback(progress)])
    trainer.remove_callback(PrinterCallback)
    out = trainer.train()
    train_seconds = time.monotonic() - started
    val_em = val_f1 = float("nan")
    if has_val:
        scores = trainer.evaluate()
        val_em, val_f1 = float(scores["eval_exact_match"]), float(scores["eval_f1"])
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(out_dir))
    tok.save_pretrained(str(out_dir))
    (out_dir / QA_META).write_text(json.dumps({"field_names": list(names), **asdict(qa)}, indent=1), encoding="utf-8")
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the checkpoints of the best epoch are copied out
    return TrainResult(out_dir, float(out.training_loss), val_em, len(train_items), len(val_items), epochs,
                       time.monotonic() - started,
                       {**asdict(config), "qa": asdict(qa), "field_names": list(names), "bf16_used": use_bf16,
                        "dropped_no_answer_in_context": {"train": dropped_train, "val": dropped_val},
                        "val_held_from_train": held, "train_windows": n_windows, "val_f1": val_f1,
                        "train_steps": int(out.global_step), "train_seconds": train_seconds,
                        "train_samples_per_second": out.metrics.get("train_samples_per_second"),
                        "log_history": trainer.state.log_history})


def load_qa(model_dir: Path) -> tuple[Any, Any, QAConfig, tuple[str, ...] | None]:
    """Load a saved span model for inference: (model, tokenizer, windowing settings, field names or None)."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    if not (Path(model_dir) / "config.json").is_file():
        raise ModelError(f"{model_dir} is not a saved model folder (no config.json).")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    meta_path = Path(model_dir) / QA_META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    names = meta.pop("field_names", None)
    qa = QAConfig(**{k: v for k, v in meta.items() if k in QAConfig.__dataclass_fields__})
    return model, tok, qa, tuple(names) if names is not None else None


def predict_qa(model_dir: Path, inputs: list[str], batch_size: int = 32,
               loaded: tuple[Any, Any, QAConfig, tuple[str, ...] | None] | None = None) -> list[str]:
    """The answer span of each input ("" when no window has a valid span).

    Inputs are split with the field names saved at training (or, for a model trained elsewhere, the names found
    in these inputs); every window of a long context is scored and the best span over all windows wins.
    """
    import torch

    model, tok, qa, names = loaded or load_qa(model_dir)
    if names is None or not any(n + ":" in text for text in inputs for n in names):
        names = field_names(inputs) if len(inputs) > 1 else None
    items = [QAItem(*split_question_context(text, names)) for text in inputs]
    if not items:
        return []
    feats = encode(tok, items, qa, with_labels=False)
    starts: list[Any] = []
    ends: list[Any] = []
    with torch.inference_mode():
        for i in range(0, len(feats.sample), batch_size):
            batch = tok.pad({k: v[i : i + batch_size] for k, v in feats.inputs.items()}, return_tensors="pt")
            out = model(**{k: v.to(model.device) for k, v in batch.items()})
            starts += list(out.start_logits.float().cpu().numpy())
            ends += list(out.end_logits.float().cpu().numpy())
    return decode(feats, [it.context for it in items], starts, ends, qa)


def is_span_model(model_dir: Path) -> bool:
    """Whether a QA student folder holds a span model; otherwise it holds the teacher-born rival that writes the
    answer (p2m_engine.students.student_choice.keep_better_reader), a generative student."""
    from p2m_engine.students.textgen import FORMAT_FILE

    return (Path(model_dir) / QA_META).is_file() or not (Path(model_dir) / FORMAT_FILE).is_file()


def load_answerer(model_dir: Path) -> Callable[[list[str]], list[str]]:
    """Load a QA student folder once, whichever of the two students it holds; the function answers inputs."""
    if is_span_model(model_dir):
        loaded = load_qa(model_dir)
        return lambda inputs: predict_qa(model_dir, inputs, loaded=loaded)
    from p2m_engine.students.textgen import generate, load_generator

    writer = load_generator(model_dir)
    return lambda inputs: generate(model_dir, inputs, loaded=writer)


def evaluate_qa(model_dir: Path, examples: list[Example], split: str,
                predictions_path: Path | None = None) -> EvalReport:
    """SQuAD exact match and F1 of the QA student on `examples`; each prediction is saved with its scores."""
    preds = load_answerer(model_dir)([e.input for e in examples])
    gold = [e.output for e in examples]
    if predictions_path:
        write_jsonl(predictions_path, ({"input": e.input, "gold": e.output, "prediction": p,
                                        "correct": normalize_answer(e.output) == normalize_answer(p),
                                        "f1": round(squad_metrics([e.output], [p])["f1"], 4)}
                                       for e, p in zip(examples, preds)))
    return EvalReport(split, len(examples), squad_metrics(list(gold), preds), {}, predictions_path)
