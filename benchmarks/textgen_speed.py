"""Measure the generative student on a real NL-to-code set: train seconds and examples per second, chrF++ and
exact match on held-out rows, peak RSS. Trains on rows of train.jsonl and scores rows of dev.jsonl only.

Usage:
    PYTHONPATH=. .venv/bin/python benchmarks/textgen_speed.py ../shared/data/conala_en --train 200 --test 50
The packaged SmolLM2 is converted into $P2M_HOME/models on first use (about 26 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

from p2m_engine.eval.metrics import generation_metrics
from p2m_engine.students.models import search_models
from p2m_engine.runs import read_jsonl
from p2m_engine.students.textgen import GenerationConfig, generate, train_generator
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example


def _rows(path: Path, n: int, skip: int = 0) -> list[Example]:
    rows = list(read_jsonl(path))[skip : skip + n]
    return [Example(str(r["input"]), str(r["output"])) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="folder with train.jsonl and dev.jsonl (input/output fields)")
    ap.add_argument("--train", type=int, default=200, help="training rows (the first ones of train.jsonl)")
    ap.add_argument("--val", type=int, default=20, help="validation rows (the next ones of train.jsonl)")
    ap.add_argument("--test", type=int, default=50, help="scored rows (the first ones of dev.jsonl)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-instruction", action="store_true", help="leave the dataset's instruction out of prompts")
    ap.add_argument("--out", type=Path, default=Path("/tmp/p2m-textgen-speed"), help="model folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    base = search_models("generation")[0]
    train = _rows(args.dataset / "train.jsonl", args.train)
    val = _rows(args.dataset / "train.jsonl", args.val, skip=args.train)
    test = _rows(args.dataset / "dev.jsonl", args.test)
    config = TrainConfig(base_model=base.path, epochs=args.epochs, batch_size=args.batch_size, min_steps=0)
    gen = GenerationConfig()
    load_before = os.getloadavg()
    t0 = time.monotonic()
    log = logging.getLogger("textgen_speed")
    info_path = args.dataset / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    instruction = "" if args.no_instruction else str(info.get("instruction") or "")
    res = train_generator(train, val, args.out, config, generation=gen, instruction=instruction,
                          progress=lambda step, total: log.info("step %d/%d", step, total))
    train_s = time.monotonic() - t0
    t1 = time.monotonic()
    preds = generate(res.model_dir, [e.input for e in test])
    gen_s = time.monotonic() - t1
    metrics = generation_metrics([e.output for e in test], preds)
    report = {
        "base_model": base.name, "instruction": instruction, "n_train": res.n_train, "n_val": res.n_val, "n_test": len(test),
        "epochs": res.epochs, "lora": res.config["lora_used"], "bf16": res.config["bf16_used"],
        "torch_threads": torch.get_num_threads(),
        "train_seconds_incl_val": round(res.seconds, 1), "train_call_seconds": round(train_s, 1),
        "step_seconds": round(res.config["step_seconds"], 1),
        "val_loss_seconds": round(res.config["val_loss_seconds"], 1),
        "train_examples_per_second": round(res.n_train * res.epochs / res.config["step_seconds"], 2),
        "generate_seconds": round(gen_s, 1), "generate_examples_per_second": round(len(test) / gen_s, 2),
        "train_loss": round(res.train_loss, 4), "val_chrf++": round(res.val_score, 4),
        "best_val_loss": res.config["best_val_loss"],
        **{f"test_{k}": round(v, 4) for k, v in metrics.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "samples": [{"input": e.input, "gold": e.output, "prediction": p} for e, p in list(zip(test, preds))[:5]],
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))  # noqa: T201 - a script's result


if __name__ == "__main__":
    main()
