"""One entry point per stage for every task type's student: train, predict, evaluate.

Classification students are encoders with a classification head (p2m_engine.students.train / evaluate); extractive QA
students are encoders with a span head (p2m_engine.students.qa); generation students are small causal LMs
(p2m_engine.students.textgen). The agent and the tools call these functions and never branch on the task type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from p2m_engine.errors import UnsupportedTaskError
from p2m_engine.eval.metrics import task_metrics
from p2m_engine.runs import write_jsonl
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import EvalReport, Example, Progress, TaskSpec, TrainResult



Outputs = list[tuple[str, float | None]]
"""The student's output for each input, with its confidence where the student gives one (classification)."""


@dataclass(frozen=True)
class Student:
    """One task type's student: how it trains, loads and scores. The functions import their modules when called,
    so that `p2m --help` loads no torch."""

    train: Callable[[TaskSpec, list[Example], list[Example], Path, TrainConfig, Progress | None], TrainResult]
    load: Callable[[Path], Callable[[list[str]], Outputs]]
    """Load the model once; the function answers batches of inputs."""
    evaluate: Callable[[Path, list[Example], str, Path | None], EvalReport] | None = None
    """Its own scoring (classification and QA write richer predictions); None: the task type's metrics."""


def _train_classifier(spec: TaskSpec, train: list[Example], val: list[Example], out: Path, config: TrainConfig,
                      progress: Progress | None) -> TrainResult:
    from p2m_engine.students.train import train_classifier

    return train_classifier(train, val, spec.labels, out, config, progress=progress)


def _load_classifier(model_dir: Path) -> Callable[[list[str]], Outputs]:
    from p2m_engine.students.evaluate import load_classifier, predict

    loaded = load_classifier(model_dir)
    return lambda inputs: [(label, p) for label, p in predict(model_dir, inputs, loaded=loaded)]


def _evaluate_classifier(model_dir: Path, examples: list[Example], split: str, path: Path | None) -> EvalReport:
    from p2m_engine.students.evaluate import evaluate_classifier

    return evaluate_classifier(model_dir, examples, split, path)


def _train_qa(spec: TaskSpec, train: list[Example], val: list[Example], out: Path, config: TrainConfig,
              progress: Progress | None) -> TrainResult:
    from p2m_engine.students.models import describe_causal_lm
    from p2m_engine.students.qa import train_qa
    from p2m_engine.students.textgen import GenerationConfig, train_generator

    if Path(config.base_model).is_dir() and describe_causal_lm(Path(config.base_model), "local"):
        # A causal LM base (the teacher-born rival a QA build kept, trained again by `p2m train`) writes the answer.
        return train_generator(train, val, out, config, progress, GenerationConfig(lora="on"), spec.instruction)
    return train_qa(train, val, out, config, progress=progress)


def _load_qa(model_dir: Path) -> Callable[[list[str]], Outputs]:
    from p2m_engine.students.qa import load_answerer

    answer = load_answerer(model_dir)  # a span head, or the teacher-born rival that writes the answer
    return lambda inputs: [(a, None) for a in answer(inputs)]


def _evaluate_qa(model_dir: Path, examples: list[Example], split: str, path: Path | None) -> EvalReport:
    from p2m_engine.students.qa import evaluate_qa

    return evaluate_qa(model_dir, examples, split, path)


def _train_generator(spec: TaskSpec, train: list[Example], val: list[Example], out: Path, config: TrainConfig,
                     progress: Progress | None) -> TrainResult:
    from p2m_engine.students.textgen import train_generator

    return train_generator(train, val, out, config, progress=progress, instruction=spec.instruction)


def _load_generator(model_dir: Path) -> Callable[[list[str]], Outputs]:
    from p2m_engine.students.textgen import generate, load_generator

    loaded = load_generator(model_dir)
    return lambda inputs: [(text, None) for text in generate(model_dir, inputs, loaded=loaded)]


STUDENTS: dict[str, Student] = {
    "classification": Student(_train_classifier, _load_classifier, _evaluate_classifier),
    "extractive-qa": Student(_train_qa, _load_qa, _evaluate_qa),
    "generation": Student(_train_generator, _load_generator),
}
"""Every task type's student: adding a task type is one entry here (and its engine module)."""


def student_for(task_type: str) -> Student:
    """The student of a task type.

    Raises:
        UnsupportedTaskError: no student for this task type.
    """
    if task_type not in STUDENTS:
        raise UnsupportedTaskError(f"No {task_type} student yet.")
    return STUDENTS[task_type]


def train_student(spec: TaskSpec, train: list[Example], val: list[Example], out_dir: Path, config: TrainConfig,
                  *, progress: Progress | None = None) -> TrainResult:
    """Fine-tune the student of `spec.task_type` from `config.base_model`; the best checkpoint on `val` is kept.

    Raises:
        UnsupportedTaskError: no student for this task type.
        TrainingError: the data cannot train this student.
    """
    return student_for(spec.task_type).train(spec, train, val, out_dir, config, progress)


TASK_FILE = "p2m_task.json"
TRAIN_FILE = "p2m_train.json"


def write_model_record(model_dir: Path, spec: TaskSpec, result: TrainResult, **extra: Any) -> None:
    """Save the task and the training settings and figures beside a trained student, so that predict, serve and
    `p2m train` work on the folder once it is copied out of its run (nanoGPT: the config travels with the
    checkpoint). `extra`: what the caller adds (data sources, prior shift, processes...)."""
    (model_dir / TASK_FILE).write_text(json.dumps(spec.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    record = {**result.config, "n_train": result.n_train, "n_val": result.n_val, "train_loss": result.train_loss,
              "val_score": result.val_score, **extra}
    (model_dir / TRAIN_FILE).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")


def kept_base_model(model_dir: Path | None, searched: str | None, teacher: str | None) -> str | None:
    """The base model of the student a build kept: the one model search found (`searched`), or the teacher's own
    weights when its record says the teacher-born rival won (p2m_engine.students.student_choice)."""
    from p2m_engine.students.student_choice import FROM_TEACHER

    path = Path(model_dir) / TRAIN_FILE if model_dir else None
    if path is not None and path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("student") == FROM_TEACHER:
        return f"{teacher} (the teacher's own weights)" if teacher else "the teacher's own weights"
    return searched


def predict_student(task_type: str, model_dir: Path, inputs: list[str]) -> list[str]:
    """The student's output for each input (a label, an answer span, or generated text)."""
    return [out for out, _ in student_for(task_type).load(model_dir)(inputs)]


def load_student(task_type: str, model_dir: Path) -> Callable[[list[str]], Outputs]:
    """Load the student once; the returned function gives (output, confidence or None) per input (serving)."""
    return student_for(task_type).load(model_dir)


def predictor(task_type: str, model_dir: Path) -> Callable[[list[str]], list[str]]:
    """Load the student once and return a function from inputs to outputs (for latency measurements)."""
    run = load_student(task_type, model_dir)
    return lambda inputs: [out for out, _ in run(inputs)]


def model_params(model_dir: Path) -> int:
    """Parameters of a saved model, read from its safetensors headers (nothing is loaded)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                n = 1
                for d in st.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def evaluate_student(task_type: str, model_dir: Path, examples: list[Example], split: str,
                     predictions_path: Path | None = None) -> EvalReport:
    """Score the student on labelled `examples` with the metrics of its task type; save every prediction."""
    student = student_for(task_type)
    if student.evaluate is not None:
        return student.evaluate(model_dir, examples, split, predictions_path)
    preds = predict_student(task_type, model_dir, [e.input for e in examples])
    gold = [e.output for e in examples]
    if predictions_path:
        write_jsonl(predictions_path, ({"input": e.input, "gold": e.output, "prediction": p,
                                        "correct": e.output.strip() == p.strip()} for e, p in zip(examples, preds)))
    return EvalReport(split, len(examples), task_metrics(task_type, gold, preds), {}, predictions_path)
