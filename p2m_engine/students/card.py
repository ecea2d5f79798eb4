"""The model card: a Hugging Face style README.md next to the trained student, with model-index metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2m_engine.types import MAIN_METRIC, TaskSpec

PIPELINE_TAG = {"classification": "text-classification", "extractive-qa": "question-answering",
                "generation": "text-generation"}
WHAT = {"classification": "text classifier", "extractive-qa": "extractive question-answering model",
        "generation": "text generator"}
PROBE_USAGE = ('from pathlib import Path\nfrom p2m_engine.students.probe_student import predict_probe  # the encoder and head, loaded together\n'
               'predict_probe(Path("{model}"), ["your text"])')
USAGE = {
    "classification": 'from transformers import pipeline\nclf = pipeline("text-classification", model="{model}")\nclf("your text")',
    "extractive-qa": 'from transformers import pipeline\nqa = pipeline("question-answering", model="{model}")\nqa(question="...", context="...")',
    "generation": 'from transformers import pipeline\ngen = pipeline("text-generation", model="{model}")\n'
                  'gen("your input", max_new_tokens=64, do_sample=False)  # see p2m predict for the exact prompt format',
}


def _model_index(spec: TaskSpec, name: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The `model-index` block the Hugging Face Hub reads: one result per evaluated split."""
    results = []
    for split, rep in metrics.items():
        if isinstance(rep, dict) and isinstance(rep.get("metrics"), dict):
            results.append({
                "task": {"type": PIPELINE_TAG.get(spec.task_type, spec.task_type)},
                "dataset": {"name": f"p2m {split} split", "type": "p2m", "split": split},
                "metrics": [{"type": k, "value": round(float(v), 4), "name": k} for k, v in rep["metrics"].items()],
            })
    return [{"name": name, "results": results}]


def _yaml(header: dict[str, Any]) -> str:
    # JSON values are valid YAML flow values: no YAML library needed, and no quoting mistakes.
    return "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in header.items())


def _teacher_line(check: dict[str, Any] | None) -> str:
    """The student against its teacher (generation and QA builds), or nothing."""
    if not check:
        return ""
    if check.get("skipped"):
        return f"\nTeacher check: {check['skipped']}.\n"
    verdict = "" if check.get("student_matches") else (" **The student falls below the teacher that taught it**: for "
                                                       "this task the teacher itself may serve better.")
    return (f"\nTeacher check on {check['n']} real {check['split']} rows ({check['metric']}): student "
            f"{check['student']:.4f}, teacher (few-shot) {check['teacher']:.4f}.{verdict}\n")


def _student_line(model_dir: Path, probe: bool, task_type: str = "generation") -> str:
    """What the student is, and why it was chosen (the training record's choice between the two students)."""
    from p2m_engine.students import TRAIN_FILE
    from p2m_engine.students.student_choice import FROM_TEACHER

    record = json.loads((model_dir / TRAIN_FILE).read_text(encoding="utf-8")) if (model_dir / TRAIN_FILE).is_file() else {}
    choice = record.get("choice") or {}
    scores = ", ".join(f"{name} {score}" for name, score in (choice.get("val_scores") or {}).items())
    if choice.get("kept") == FROM_TEACHER and task_type == "extractive-qa":
        return ("the teacher's own weights fine-tuned with LoRA on the build's data (merged), writing the answer after "
                "the question and its context: it scored a higher token F1 on validation than the encoder with a "
                f"span head trained on the same rows ({scores})")
    if choice.get("kept") == FROM_TEACHER:
        return ("the teacher's own weights fine-tuned with LoRA on the build's data (merged): it scored higher on "
                f"validation (chrF++) than the small packaged model fine-tuned on the same rows ({scores})")
    if probe and choice:
        return ("the base encoder, frozen, with a linear head (`p2m_head.safetensors`) trained on the real labelled "
                f"rows: it scored higher on validation than the encoder fine-tuned end to end ({scores})")
    checked = record.get("consistency") or {}
    dropped = (f"; {checked['dropped']} of the {checked['rows']} judged rows were dropped first, because a head "
               "trained on the other rows gave them another label (label consistency check, "
               f"{checked['folds']}-fold)") if probe and checked.get("rows") else ""
    near = record.get("nearness") or {}
    weighed = (f"; hub texts far from the demonstrations weighed less (nearness weights: the {near['rows']} texts "
               f"weighed {near['weight']} in all)") if probe and near.get("temperature") and near.get("rows") else ""
    own, written = record.get("unlabelled") or 0, record.get("written") or 0
    text = f"real text ({own} of the texts from the user's own unlabelled file, any others from the hub)" if own \
        else "real hub text"
    if written:
        text += f" and of {written} inputs the teacher wrote like the demonstrations (without their labels)"
    soft = (f"with a linear head (`p2m_head.safetensors`) trained on the judges' soft labels of {text}: no real "
            "labelled rows were found, and a fully fine-tuned encoder learns such text's domain rather than the task")
    if probe and (tuned := record.get("contrastive")):
        return (f"the packaged sentence encoder, first tuned on {tuned.get('pairs')} pairs of {tuned.get('rows')} texts "
                "(the demonstrations and the judges' most confident hub texts of each label; SetFit's contrastive "
                f"step), then frozen, {soft}{dropped}{weighed}")
    if probe:
        return f"the packaged sentence encoder, frozen, {soft}{dropped}{weighed}"
    return "fine-tuned end to end" + (f" (validation: {scores})" if len(choice.get("val_scores") or {}) > 1 else "")


def _more_data(model_dir: Path) -> str:
    """Lines for the training rows that were neither retrieved nor generated: hub text the teacher labelled or
    answered, and cloze questions made from hub passages (from the model's training record)."""
    from p2m_engine.students import TRAIN_FILE

    path = model_dir / TRAIN_FILE
    sources = (json.loads(path.read_text(encoding="utf-8")).get("sources") or {}) if path.is_file() else {}
    lines = ""
    if sources.get("labelled"):
        lines += f",\n  {sources['labelled']} real hub texts labelled or answered by the teacher"
    if sources.get("cloze"):
        lines += f",\n  {sources['cloze']} cloze questions made from hub passages without the teacher"
    return lines


def write_model_card(model_dir: Path, spec: TaskSpec, facts: dict[str, Any]) -> Path:
    """Write model_dir/README.md from the task and the build's figures (no secrets are passed in).

    Args:
        model_dir: the saved student.
        spec: the task it was built for.
        facts: the build summary (base_model, dataset, retrieved, generated, teacher, metrics, val_score, ...).
    """
    from p2m_engine.students.probe_student import is_probe_student
    from p2m_engine.students.qa import is_span_model

    metrics = facts.get("metrics") or {}
    # A QA build may keep the teacher-born rival, a generative model: it is used as one.
    kind = "generation" if spec.task_type == "extractive-qa" and not is_span_model(model_dir) else spec.task_type
    tag = PIPELINE_TAG.get(kind, "text-classification")
    probe = is_probe_student(model_dir)
    usage = PROBE_USAGE if probe else USAGE.get(kind, USAGE["classification"])
    student = _student_line(model_dir, probe, spec.task_type)
    header = {"library_name": "sentence-transformers" if probe else "transformers", "pipeline_tag": tag, "base_model": facts.get("base_model"),
              "tags": ["p2m", tag], "model-index": _model_index(spec, model_dir.resolve().name, metrics)}
    names = list(dict.fromkeys(k for rep in metrics.values() if isinstance(rep, dict)
                               for k in (rep.get("metrics") or {})))
    rows = [f"| {split} | {rep['n']} | " + " | ".join(f"{rep['metrics'].get(k, float('nan')):.4f}" for k in names) + " |"
            for split, rep in metrics.items() if isinstance(rep, dict) and isinstance(rep.get("metrics"), dict)]
    main = MAIN_METRIC.get(spec.task_type, "accuracy")
    demos = "\n".join(f"- `{e.input[:120]}` → `{e.output[:80]}`" for e in spec.examples[:5])
    labels = f"- **Labels**: {', '.join(spec.labels)}\n" if spec.labels else ""
    labels += "".join(f"  - `{label}`: {meaning}\n" for label, meaning in spec.label_descriptions.items())
    text = f"""---
{_yaml(header)}
---

# {spec.instruction.splitlines()[0][:80]}

A small {WHAT.get(spec.task_type, 'model')} built by p2m from a task description and a few
demonstrations; it runs on a laptop CPU.

- **Task** ({spec.task_type}): {spec.instruction}
{labels}- **Base model**: {facts.get("base_model")}
- **Student**: {student}
- **Training data**: {facts.get('retrieved', 0)} real examples retrieved from `{facts.get('dataset')}`,
  {facts.get('generated', 0)} generated by the teacher LLM `{facts.get('teacher')}`{_more_data(model_dir)}
- **Validation score** (held-back training data, not real test data): {facts.get('val_score')}

Demonstrations given by the user:

{demos}

## Evaluation (data the model never trained on)

Main metric: **{main}**. The reported score is measured on {facts.get('measured_on') or 'the splits below'}.
{_teacher_line(facts.get("teacher_check"))}
| split | n | {' | '.join(names)} |
| --- | --- |{' --- |' * len(names)}
{chr(10).join(rows)}

`demos` are the task prompt's demonstrations; `dev` is real data held out of training that the build chose
this model on (the best of its iterations); `test` is real held-out data it never decided on. A large gap between the validation
score and the test score means the training data (partly synthetic) differs from real inputs.

## Use

```python
{usage.format(model=model_dir)}
```

or `p2m predict RUN "text"`, `p2m serve RUN` (HTTP on 127.0.0.1).

## Intended use and limitations

Intended for the task above, on inputs like the demonstrations. The model was trained on a few hundred to a few
thousand examples, part of them written by an LLM, so it inherits that LLM's gaps and biases: expect errors on
inputs unlike the training data, and check the scores above on data of your own before relying on it. The
decision trace of the build (`p2m trace RUN`) says which data and models were used and why.
"""
    path = model_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
