"""Speed and quality of the extractive QA student on a real dataset: fine-tune on the first N rows of a JSONL
file (input/output), score SQuAD EM/F1 on the rest, keeping paragraphs disjoint (rows whose context also appears in
the training rows are left out of the test).

Usage: PYTHONPATH=. python benchmarks/qa_speed.py ../shared/data/squad/dev.jsonl --n-train 300 [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from p2m_engine.data.datasets import load_examples
from p2m_engine.students.embeddings import packaged_minilm_path
from p2m_engine.students.qa import evaluate_qa, train_qa
from p2m_engine.students.qa_text import field_names, split_question_context
from p2m_engine.students.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--base-model", default="", help="default: the packaged all-MiniLM-L6-v2")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--min-steps", type=int, default=150, help="small data gets more epochs, up to this many steps")
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--bf16", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/p2m_qa_speed"))
    ap.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows = load_examples(args.data)
    train, rest = rows[: args.n_train], rows[args.n_train :]
    names = field_names(e.input for e in rows)
    train_contexts = {split_question_context(e.input, names)[1] for e in train}
    test = [e for e in rest if split_question_context(e.input, names)[1] not in train_contexts]
    config = TrainConfig(base_model=args.base_model or str(packaged_minilm_path()), epochs=args.epochs,
                         learning_rate=args.learning_rate, batch_size=args.batch_size, bf16=args.bf16,
                         min_steps=args.min_steps)
    result = train_qa(train, [], args.work / "model", config)
    started = time.monotonic()
    report = evaluate_qa(result.model_dir, test, "test", args.work / "predictions.jsonl")
    eval_seconds = time.monotonic() - started
    figures = {
        "data": str(args.data), "base_model": config.base_model, "n_train": result.n_train, "n_val": result.n_val,
        "n_test": report.n, "test_left_out_shared_paragraph": len(rest) - len(test),
        "dropped": result.config["dropped_no_answer_in_context"], "train_windows": result.config["train_windows"],
        "epochs": round(result.epochs, 2), "steps": result.config["train_steps"],
        "learning_rate": config.learning_rate, "batch_size": config.batch_size,
        "bf16": result.config["bf16_used"], "train_seconds": round(result.config["train_seconds"], 1),
        "train_windows_per_second": result.config["train_samples_per_second"],
        "train_loss": round(result.train_loss, 4), "val_exact_match": round(result.val_score, 4),
        "val_f1": round(result.config["val_f1"], 4),
        "test_exact_match": round(report.metrics["exact_match"], 4), "test_f1": round(report.metrics["f1"], 4),
        "eval_seconds": round(eval_seconds, 1),
    }
    text = json.dumps(figures, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)  # noqa: T201 - a script's result


if __name__ == "__main__":
    main()
