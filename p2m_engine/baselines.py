"""Baselines a student is compared with: the teacher LLM answering few-shot, and the majority class."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Callable

from p2m_engine.errors import LLMError
from p2m_engine.llm import LLM
from p2m_engine.types import Example, TaskSpec
from prompts import render

Progress = Callable[[int, int], None]


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
                                                         examples=spec.examples, labels=spec.labels, input=text)}]
        started = time.perf_counter()
        try:
            answer = llm.call_tool(messages, "answer", schema, temperature=0.0, max_tokens=32)
            label = str(answer.get("label", ""))
        except LLMError as e:
            if "no valid answer" not in str(e):
                raise
            label = ""
        latencies.append((time.perf_counter() - started) * 1000)
        labels.append(label if label in spec.labels else "")
        if progress:
            progress(i + 1, len(inputs))
    return labels, latencies


def p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None
