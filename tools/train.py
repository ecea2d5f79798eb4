"""Tool: train the student on the retrieved and generated data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine import students
from p2m_engine.students import contrastive, prior, probe_student, qa, student_choice, train
from p2m_engine.data import cloze, pool
from p2m_engine.data.datasets import load_examples
from p2m_engine.students.embeddings import packaged_minilm_path
from p2m_engine.errors import TrainingError
from p2m_engine.students.packaged import ensure_teacher_lm
from p2m_engine.students.contrastive import ContrastiveConfig
from p2m_engine.students.probe_student import ProbeConfig
from p2m_engine.runs import read_jsonl, write_jsonl
from p2m_engine.data.synth import normalize
from p2m_engine.types import Example, TaskSpec
from tools.context import Meter, ToolContext, observation
from tools.contracts import StateView
from tools.synth import held_out_inputs


def training_examples(ctx: ToolContext, labels: tuple[str, ...], demos: list[str]) -> tuple[list[Example], dict[str, int]]:
    """Retrieved + teacher-labelled + generated examples, deduplicated, with test inputs and demonstrations removed.

    With a label set (classification), rows whose output is not a label are dropped.
    """
    banned = {normalize(x) for x in [*held_out_inputs(ctx), *demos]}
    seen: set[str] = set()
    rows: list[Example] = []
    sources: dict[str, int] = {}
    for name in ("retrieved", "labelled", "generated"):
        path = ctx.run.data(name)
        if not path.is_file() or path.stat().st_size == 0:
            continue
        for e in load_examples(path):
            key = normalize(e.input)
            if (not labels or e.output in labels) and key not in banned and key not in seen:
                seen.add(key)
                rows.append(e)
                sources[name] = sources.get(name, 0) + 1
    return rows, sources


def cloze_rows(ctx: ToolContext, spec: TaskSpec, val: list[Example]) -> tuple[list[Example], dict[str, Any]]:
    """Cloze questions from hub passages for an extractive-QA student (p2m_engine.data.cloze), made once per run
    and kept in `data/cloze.jsonl`; for training: the caller keeps the task's rows for validation. The passages
    of held-out and validation inputs are never used."""
    if spec.task_type != "extractive-qa" or ctx.train.cloze <= 0:
        return [], {}
    path = ctx.run.data("cloze")
    if path.is_file():
        made = load_examples(path)
        return made, {"count": len(made), "reused": True}
    held = [*held_out_inputs(ctx), *(e.input for e in val)]
    exclude = {normalize(p) for x in held for p in pool.pieces(x)}
    result = cloze.cloze_pairs(spec, ctx.hub_dirs, cloze.ClozeConfig(count=ctx.train.cloze, seed=ctx.train.seed),
                               exclude=exclude)
    write_jsonl(path, ({**e.to_dict(), "source": "cloze"} for e in result.rows))
    return result.rows, result.to_dict()


def training_split(ctx: ToolContext, rows: list[Example], stratify: bool) -> tuple[list[Example], list[Example]]:
    """Train and validation rows. The validation rows of the run's first training stay the validation rows
    (new data goes to training), so the validation scores of all iterations are measured on the same examples."""
    val_path = ctx.run.data("val")
    if val_path.is_file() and val_path.stat().st_size:
        keys = {normalize(e.input) for e in load_examples(val_path)}
        val = [e for e in rows if normalize(e.input) in keys]
        if val:
            return [e for e in rows if normalize(e.input) not in keys], val
    return train.split_validation(rows, seed=ctx.train.seed, stratify=stratify)


# Real rows needed to estimate a label prior, and real dev rows needed to check the shift against.
MIN_PRIOR_ROWS = 20
MIN_DEV_CHECK = 30


def _outputs(ctx: ToolContext, name: str) -> list[str]:
    path = ctx.run.data(name)
    return [e.output for e in load_examples(path)] if path.is_file() and path.stat().st_size else []


def correct_prior(ctx: ToolContext, labels: tuple[str, ...], trained: dict[str, float], model_dir: Any,
                  estimate: tuple[dict[str, float], int] | None = None) -> dict[str, Any]:
    """Shift the trained classifier to the label prior of the run's real rows (p2m_engine.students.prior).

    The prior comes from the real dev split (the natural distribution of the retrieved datasets) and the judges'
    labels of real hub text; generated rows, balanced by design, do not count. With a real dev split of at least
    MIN_DEV_CHECK rows the shift is kept only when it does not lower dev accuracy (the measurement decides);
    without one it is kept on the estimate alone (+12 and +6 points on the unseen emotion and trec tasks,
    -1 on ag_news: see p2m_engine.students.prior). `trained` is the label distribution the student learned from;
    `estimate` (prior, rows) replaces the estimate from the files (the probe student's soft-labelled texts, a
    larger sample of the same real text). Returns what was done, for the trace and the model folder.
    """
    if not ctx.train.prior:
        return {"applied": False, "why": "turned off"}
    if estimate is None:
        real = [o for o in _outputs(ctx, "dev") + _outputs(ctx, "labelled") if o in labels]
        estimate = (prior.distribution(real, labels), len(real))
    target, n_real = estimate
    if n_real < MIN_PRIOR_ROWS:
        return {"applied": False, "why": f"{n_real} real labelled rows, fewer than {MIN_PRIOR_ROWS} to estimate a prior"}
    shift = prior.logit_shift(target, trained)
    info: dict[str, Any] = {"prior": {k: round(v, 4) for k, v in target.items()},
                            "trained": {k: round(v, 4) for k, v in trained.items()}, "shift": shift, "real_rows": n_real}
    if not prior.worth_shifting(shift):
        return {**info, "applied": False, "why": "the training rows already follow the prior"}
    dev_path = ctx.run.data("dev")
    dev = load_examples(dev_path) if dev_path.is_file() and dev_path.stat().st_size else []
    before = students.evaluate_student("classification", model_dir, dev, "dev").metrics["accuracy"] \
        if len(dev) >= MIN_DEV_CHECK else None
    prior.shift_model(model_dir, shift)
    if before is None:
        return {**info, "applied": True, "why": "estimated from real rows; no real dev split to check it on"}
    after = students.evaluate_student("classification", model_dir, dev, "dev").metrics["accuracy"]
    info.update(dev_before=round(before, 4), dev_after=round(after, 4))
    if after < before:
        prior.shift_model(model_dir, {k: -v for k, v in shift.items()})
        return {**info, "applied": False, "why": "it lowered dev accuracy"}
    return {**info, "applied": True, "why": "dev accuracy did not drop"}


def soft_rows(ctx: ToolContext, labels: tuple[str, ...], val: list[Example]) -> list[tuple[str, np.ndarray]]:
    """The judges' soft-labelled hub texts of label_texts (none before it ran), without validation inputs."""
    path = ctx.run.data("soft_labels")
    if not path.is_file():
        return []
    held = {normalize(e.input) for e in val} | {normalize(x) for x in held_out_inputs(ctx)}
    out = []
    for row in read_jsonl(path):
        probs = row.get("probs")
        if isinstance(row.get("input"), str) and isinstance(probs, dict) and normalize(row["input"]) not in held:
            out.append((row["input"], np.array([float(probs.get(label, 0.0)) for label in labels])))
    return out


def own_texts(ctx: ToolContext, soft: list[tuple[str, np.ndarray]], source: str = pool.UNLABELLED) -> int:
    """How many of the soft-labelled texts came from `source`, not the hub: the user's unlabelled file
    (--unlabelled), or the inputs the teacher wrote (`pool.WRITTEN`)."""
    texts = {t for t, _ in soft}
    path = ctx.run.data("soft_labels")
    return sum(1 for row in read_jsonl(path) if row.get("hub") == source and row.get("input") in texts) \
        if texts and path.is_file() else 0


def soft_weights(ctx: ToolContext, soft: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, dict[str, Any]]:
    """A weight per soft-labelled text from its recorded nearness to the task (probe_student.nearness_weights;
    the user's own texts, and texts labelled before nearness was recorded, weigh 1), and what the weights came to."""
    rows = {row.get("input"): row for row in read_jsonl(ctx.run.data("soft_labels"))} if soft else {}
    found = [rows.get(t, {}) for t, _ in soft]
    near = np.array([float(r["near"]) if isinstance(r.get("near"), (int, float)) and r.get("hub") != pool.UNLABELLED
                     else np.nan for r in found])
    judged = np.array([r.get("judges") == "all" for r in found], bool)
    weights = probe_student.nearness_weights(near, judged, ctx.train.nearness)
    return weights, {"temperature": ctx.train.nearness, "rows": len(soft), "weight": round(float(weights.sum()), 1)}


def probe_rows(soft: list[tuple[str, np.ndarray]], train_rows: list[Example],
               labels: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """The probe student's rows: every soft-labelled text, and the other training rows (generated) as one-hot."""
    seen = {normalize(t) for t, _ in soft}
    texts = [t for t, _ in soft]
    targets = [p / p.sum() for _, p in soft]
    for e in train_rows:
        if normalize(e.input) not in seen:
            texts.append(e.input)
            targets.append(np.eye(len(labels))[labels.index(e.output)])
    return texts, np.stack(targets)


@tool(response_format="content_and_artifact")
def train_model(runtime: ToolRuntime, epochs: float = 0, base_model: str = "") -> tuple[str, dict[str, Any]]:
    """Fine-tune the student on the data gathered so far (after an evaluation: retrain, with more epochs when
    it is under-trained).

    Trains on every retrieved, teacher-labelled and generated example (for extractive QA also on cloze
    questions made from hub passages) and keeps the epoch best on validation.

    Args:
        epochs: passes over the data (0: the run's default).
        base_model: the name of another loadable base model search_models found, to train from instead of the
            one in use ("": the one in use).

    Returns the training loss, the validation score (on held-back training rows) and the counts.
    """
    ctx: ToolContext = runtime.context
    view = StateView.of(runtime.state)
    meter = Meter(None)
    spec = view.task
    if not view.base_model:
        raise TrainingError("No base model yet. Call search_models first.")
    if base_model and base_model not in view.model_candidates:
        raise TrainingError(f"{base_model!r} is not a base model search_models found ({', '.join(view.model_candidates)}).")
    base_path = view.model_candidates[base_model] if base_model else view.base_model
    rows, sources = training_examples(ctx, spec.labels, [e.input for e in spec.examples])
    if not rows:
        raise TrainingError("No training data yet. Call search_datasets or generate_examples first.")
    tr, val = training_split(ctx, rows, stratify=spec.task_type == "classification")
    # Extractive QA: cloze questions from hub passages teach the new span head to find answers; they train, and
    # the task's own rows validate (the student would otherwise hold back a tenth of all rows, cloze ones too).
    extra, cloze_info = cloze_rows(ctx, spec, val)
    need = qa.MIN_VAL - len(val)
    if extra and 0 < need < len(tr):
        val, tr = val + tr[:need], tr[need:]
    write_jsonl(ctx.run.data("train"), (e.to_dict() for e in tr))
    write_jsonl(ctx.run.data("val"), (e.to_dict() for e in val))
    config = dataclasses.replace(ctx.train, base_model=base_path, **({"epochs": epochs} if epochs > 0 else {}))
    # Every training gets its own folder: the build keeps the best one, not the last one.
    iteration = view.iteration + 1
    folder = f"iterations/{iteration}/model"
    soft = soft_rows(ctx, spec.labels, val) \
        if spec.task_type == "classification" and not sources.get("retrieved") and ctx.train.soft else []
    if soft:
        # No real labelled rows: the frozen encoder with a head learns the judges' soft labels (p2m_engine.students.probe_student).
        texts, targets = probe_rows(soft, tr, spec.labels)
        encoder, tuned = packaged_minilm_path(), None
        if config.contrastive:
            # The encoder first learns the task's geometry from the demos and the judges' surest texts.
            picked = [(texts[i], int(targets[i].argmax())) for i in contrastive.confident(targets, config.contrastive)]
            picked += [(e.input, spec.labels.index(e.output)) for e in spec.examples if e.output in spec.labels]
            tuned = contrastive.tune_encoder(encoder, picked, ctx.run.path(folder), ContrastiveConfig(seed=config.seed),
                                             progress=ctx.report("train_model"))
            encoder = tuned.encoder
        # Rows whose judged label the head cannot learn from the other rows are dropped first (label consistency).
        # Hub text far from the demonstrations weighs less: the test inputs are like the demonstrations.
        near, nearness = soft_weights(ctx, soft)
        result = probe_student.train_probe_student(texts, targets, spec.labels, ctx.run.path(folder), encoder,
                                                   ProbeConfig(seed=config.seed, folds=config.consistency),
                                                   weights=np.concatenate([near, np.ones(len(texts) - len(soft))]),
                                                   val=[(e.input, e.output) for e in val], real=len(soft))
        result = dataclasses.replace(result, config={**result.config, "nearness": nearness})
        if tuned:
            result = dataclasses.replace(result, seconds=result.seconds + tuned.seconds, config={**result.config, "contrastive": {
                "rows": tuned.rows, "pairs": tuned.pairs, "loss": round(tuned.loss, 4), "seconds": round(tuned.seconds, 1)}})
        # The prior of real text is the soft labels' own mean (of the rows the consistency check kept): only the
        # generated rows moved the student off it.
        checked = result.config.get("consistency") or {}
        trained = checked.get("distribution") or prior.soft_distribution(targets, spec.labels)
        soft_prior = checked.get("prior") or prior.soft_distribution(np.stack([p for _, p in soft]), spec.labels)
        estimate: tuple[dict[str, float], int] | None = (soft_prior, len(soft))
    else:
        result = students.train_student(spec, tr + extra, val, ctx.run.path(folder), config,
                                        progress=ctx.report("train_model"))
        if extra:
            sources = {**sources, "cloze": len(extra)}
        trained, estimate = prior.distribution([e.output for e in tr], spec.labels), None
    student = student_choice.PROBE if soft else student_choice.FINE_TUNED
    choice: dict[str, Any] = {}
    if spec.task_type == "classification" and sources.get("retrieved") and ctx.train.rival and Path(config.base_model).is_dir():
        # Real labelled rows: the same encoder frozen, with a head on the same rows, is tried too; validation decides.
        kept = student_choice.keep_better(result, tr, val, spec.labels, Path(config.base_model),
                                          ProbeConfig(seed=config.seed))
        result, student, choice = kept.result, kept.student, kept.to_dict()
    if (spec.task_type in ("generation", "extractive-qa") and ctx.train.rival and ctx.train.teacher_steps > 0
            and ctx.teacher_weights is not None and not ctx.base_model):
        # The teacher's own weights, fine-tuned with LoRA on the same rows, are tried too; validation decides.
        keep = student_choice.keep_better_generator if spec.task_type == "generation" else student_choice.keep_better_reader
        kept = keep(result, tr + extra, val, config, ensure_teacher_lm(ctx.teacher_weights), spec.instruction,
                    progress=ctx.report("train_model"), max_steps=ctx.train.teacher_steps)
        result, student, choice = kept.result, kept.student, kept.to_dict()
    prior_info = correct_prior(ctx, spec.labels, trained, result.model_dir, estimate) \
        if spec.task_type == "classification" else {}
    # The model folder says what it is, so that predict/serve work on it when it is copied out of the run.
    students.write_model_record(result.model_dir, spec, result, sources=sources, prior=prior_info, student=student,
                                choice=choice, unlabelled=own_texts(ctx, soft),
                                written=own_texts(ctx, soft, pool.WRITTEN))
    artifact = {"model_dir": str(result.model_dir), "iteration": iteration, "train_loss": round(result.train_loss, 4),
                "val_score": round(result.val_score, 4), "n_train": result.n_train, "n_val": result.n_val,
                "sources": sources, "epochs": result.epochs, "bf16": result.config.get("bf16_used"), "prior": prior_info,
                "student": student, "choice": choice, "soft_labelled": len(soft), "cloze": cloze_info,
                **meter.figures(),
                **({"base_model": base_path, "base_model_name": base_model} if base_model else {})}
    shown = ("student", "choice", "train_loss", "val_score", "n_train", "n_val", "sources", "soft_labelled")
    return observation({**{k: artifact[k] for k in shown}, "prior_shift": prior_info.get("applied", False)}), artifact
