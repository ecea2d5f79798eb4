"""The student against the teacher that taught it, on the same real held-out rows.

Prompt2Model's promise is a small model at least as good as its teacher. On generation and extractive QA with
a 0.5B teacher that promise often fails (the student learns from few, noisy pairs), so a build checks it and
says so: the summary, the model card and the exit code carry both scores side by side. The teacher answers
few-shot with the task's prompt (p2m_engine.eval.baselines), at most `limit` rows: at 1-7 s an answer on a laptop
CPU, a full dev split would cost more than the build.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p2m_engine.eval.baselines import teacher_answer, teacher_classify
from p2m_engine.llm import LLM
from p2m_engine.eval.metrics import task_metrics
from p2m_engine.students import evaluate_student
from p2m_engine.types import MAIN_METRIC, Example, Progress, TaskSpec


@dataclass(frozen=True)
class TeacherCheck:
    """Both scores on the same rows."""

    split: str
    n: int
    metric: str
    student: float
    teacher: float

    @property
    def student_matches(self) -> bool:
        """The student scores at least as well as its teacher."""
        return self.student >= self.teacher

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "student_matches": self.student_matches}

    def describe(self) -> str:
        verdict = "matches" if self.student_matches else "falls below"
        return (f"the student {verdict} its teacher on {self.n} real {self.split} rows: {self.metric} "
                f"{self.student:.4f} (student) vs {self.teacher:.4f} (teacher, few-shot)")


def check_teacher(spec: TaskSpec, llm: LLM, model_dir: Path, rows: list[Example], split: str, limit: int,
                  progress: Progress | None = None) -> TeacherCheck:
    """Score the student and the teacher on the first `limit` of `rows` with the task type's main metric.

    Raises:
        LLMError: the teacher's service keeps failing.
    """
    rows = rows[:limit]
    inputs = [e.input for e in rows]
    ask = teacher_classify if spec.task_type == "classification" else teacher_answer
    answers, _ = ask(spec, llm, inputs, progress)
    main = MAIN_METRIC[spec.task_type]
    teacher = task_metrics(spec.task_type, [e.output for e in rows], answers)[main]
    student = evaluate_student(spec.task_type, model_dir, rows, split).metrics[main]
    return TeacherCheck(split, len(rows), main, round(float(student), 4), round(float(teacher), 4))
