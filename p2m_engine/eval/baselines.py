"""Baselines a student is compared with: the teacher LLM answering few-shot, the majority class, copying the input."""

from __future__ import annotations

import statistics
import time
from collections import Counter

from p2m_engine.errors import UnparseableAnswerError
from p2m_engine.llm import LLM
from p2m_engine.types import Example, Progress, TaskSpec
from prompts import render



def majority_label(examples: list[Example]) -> str:
    """The most frequent output (ties broken by first occurrence)."""
    return Counter(e.output for e in examples).most_common(1)[0][0]


def teacher_classify(spec: TaskSpec, llm: LLM, inputs: list[str], progress: Progress | None = None) -> tuple[list[str], list[float]]:
    """Label each input with the teacher LLM, few-shot with the task's own prompt, constrained to the labels.

    Returns:
        (labels, per-example latencies in ms). An input the LLM cannot answer gets label "" (counted wrong).
    """
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": list(spec.labels)}},
              "required": ["label"]}
    labels: list[str] = []
    latencies: list[float] = []
    for i, text in enumerate(inputs):
        messages = [{"role": "user", "content": render("classify", instruction=spec.instruction,
                                                         examples=spec.examples, labels=spec.labels,
                                                         descriptions=spec.label_descriptions, input=text)}]
        started = time.perf_counter()
        try:
            answer = llm.call_tool(messages, "answer", schema, temperature=0.0, max_tokens=32)
            label = str(answer.get("label", ""))
        except UnparseableAnswerError:
            label = ""
        latencies.append((time.perf_counter() - started) * 1000)
        labels.append(label if label in spec.labels else "")
        if progress:
            progress(i + 1, len(inputs))
    return labels, latencies


# Longest free-text answer asked of the teacher (characters; the schema's maxLength keeps decoding bounded).
MAX_ANSWER_CHARS = 400


def teacher_answer(spec: TaskSpec, llm: LLM, inputs: list[str], progress: Progress | None = None,
                   max_chars: int = MAX_ANSWER_CHARS) -> tuple[list[str], list[float]]:
    """Answer each input with the teacher LLM, few-shot with the task's own prompt, as free text.

    Used for task types without a label set (extractive QA, generation).

    Returns:
        (answers, per-example latencies in ms). An input the LLM cannot answer gets "" (scored as wrong).
    """
    schema = {"type": "object", "properties": {"output": {"type": "string", "maxLength": max_chars}},
              "required": ["output"]}
    answers: list[str] = []
    latencies: list[float] = []
    for i, text in enumerate(inputs):
        messages = [{"role": "user", "content": render("answer", instruction=spec.instruction,
                                                         examples=spec.examples, input=text)}]
        started = time.perf_counter()
        try:
            answer = str(llm.call_tool(messages, "answer", schema, temperature=0.0,
                                       max_tokens=32 + max_chars // 2).get("output", ""))
        except UnparseableAnswerError:
            answer = ""
        latencies.append((time.perf_counter() - started) * 1000)
        answers.append(answer.strip())
        if progress:
            progress(i + 1, len(inputs))
    return answers, latencies


def p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None
