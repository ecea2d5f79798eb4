"""How good each label judge is on a task's own real text, and what the build's weighting of them makes of it.

With no labelled dataset to retrieve, label_texts (p2m_engine/data/labelling.py) labels hub text with three judges
(`label_name`, `label_in_instruction`: the packaged MiniLM's zero-shot cosines; `teacher`: the teacher scoring each
label, calibrated) and pools them with weights from their gain on the task's few demonstrations. A build never sees
the task's own text, so it cannot tell how good the judges are on it. This script measures that: each judge, the
pooled judges with the demos' weights (what a build uses) and with equal weights, on `--n` rows of a task folder's
test file, with the label distribution each predicts, so the limit of labelled hub text on a task can be read.

    python benchmarks/judges.py ../shared/data/sms_spam ../shared/data/trec --n 200

It starts the embedded teacher (one llama.cpp server; run it alone). Prints a markdown table; `--out` also
writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2m_engine.data import labelling, pool, scoring  # noqa: E402
from p2m_engine.llm import LLM  # noqa: E402
from p2m_engine.llm.embedded import EMBEDDED_MODEL, LlamaServer, embedded_model_path  # noqa: E402
from p2m_engine.runs import read_jsonl  # noqa: E402
from p2m_engine.task import parse_task  # noqa: E402
from p2m_engine.types import TaskSpec  # noqa: E402


def measure(task_dir: Path, llm: LLM, n: int, test_file: str, seed: int = 0) -> dict[str, Any]:
    """The judges of `task_dir`'s prompt on `n` random rows of its test file (rows with a label the prompt names)."""
    spec: TaskSpec = parse_task((task_dir / "prompt.txt").read_text(encoding="utf-8"))
    temperature = labelling.LabelConfig().temperature
    demos = {e.input for e in spec.examples}
    rows = [r for r in read_jsonl(task_dir / test_file) if r.get("output") in spec.labels and r["input"] not in demos]
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    gold = np.array([spec.labels.index(r["output"]) for r in rows])
    demo_gold = np.array([spec.labels.index(e.output) for e in spec.examples])
    started = time.monotonic()
    on_demos = labelling.name_judges(spec, pool.embed_texts([e.input for e in spec.examples]), temperature)
    on_demos["teacher"] = labelling.teacher_on_demos(spec, llm)
    judges = labelling.name_judges(spec, pool.embed_texts([r["input"] for r in rows]), temperature)
    judges["teacher"] = scoring.score_labels(spec, llm, [r["input"] for r in rows]).probs
    weights = labelling.judge_weights({k: labelling.gain(p, demo_gold)[1] for k, p in on_demos.items()})
    judges["pooled (demos' weights)"] = labelling.pooled({k: judges[k] for k in weights}, weights)
    judges["pooled (equal weights)"] = labelling.pooled({k: judges[k] for k in weights}, {k: 1.0 for k in weights})

    def shares(labels: np.ndarray) -> dict[str, float]:
        return {label: round(float(np.mean(labels == i)), 2) for i, label in enumerate(spec.labels)}

    return {"task": task_dir.name, "n": len(rows), "labels": list(spec.labels), "gold": shares(gold),
            "weights": weights, "seconds": round(time.monotonic() - started, 1),
            "on_demos": {k: round(labelling.gain(p, demo_gold)[0], 3) for k, p in on_demos.items()},
            "judges": {k: {"accuracy": round(100 * float(np.mean(p.argmax(1) == gold)), 1),
                           "predicted": shares(p.argmax(1))} for k, p in judges.items()}}


def table(results: list[dict[str, Any]]) -> str:
    names = list(results[0]["judges"])
    lines = ["| task | n | " + " | ".join(names) + " | demos' weights | predicted (pooled) | real |",
             "|---|---|" + "---|" * (len(names) + 3)]
    for r in results:
        weights = ", ".join(f"{k} {v:.2f}" for k, v in r["weights"].items())
        pooled = r["judges"]["pooled (demos' weights)"]["predicted"]
        lines.append(f"| {r['task']} | {r['n']} | " + " | ".join(f"{r['judges'][k]['accuracy']:.1f}" for k in names)
                     + f" | {weights} | {json.dumps(pooled)} | {json.dumps(r['gold'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", type=Path, help="task folders (prompt.txt and a labelled test file)")
    parser.add_argument("--n", type=int, default=200, help="test rows measured per task")
    parser.add_argument("--test-file", default="dev.jsonl")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    with LlamaServer(embedded_model_path(), alias=EMBEDDED_MODEL) as server:
        llm = LLM(server.base_url, EMBEDDED_MODEL)
        results = [measure(t, llm, args.n, args.test_file) for t in args.tasks]
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
