"""Speed figures of p2m on this machine (a script that prints figures; never a timed test).

1. Synthetic-data request throughput of p2m's LLM client at concurrency 1, 4 and 16:
   - against a stand-in OpenAI-compatible server on 127.0.0.1 that answers every request after a fixed
     200 ms (the ideal at concurrency c is c / 0.2 requests/s; the share reached is p2m's own overhead),
   - against the embedded llama.cpp server (one decoding slot: concurrency only queues).
2. Training throughput (examples/s) of each student type on this CPU.
3. Inference latency p50/p95 of the student at batch 1 and 32, against the teacher LLM.

Usage:
    .venv/bin/python benchmarks/speed.py [--skip-embedded] [--out benchmarks/results/speed]
Writes speed.json and speed.md to --out and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from p2m_engine.llm import LLM  # noqa: E402
from p2m_engine.task import parse_task  # noqa: E402
from prompts import render  # noqa: E402
from tests.openai_stub import OpenAIStub  # noqa: E402

STANDIN_LATENCY_S = 0.2
CONCURRENCY = (1, 4, 16)
DEMO_PROMPT = ROOT / "examples" / "sms_spam.txt"
DEMO_DATA = ROOT / "examples" / "hub" / "sms_spam" / "train.jsonl"
SHARED = ROOT.parent / "shared" / "data"


class StandIn(OpenAIStub):
    """The loopback stub answering every chat request after a fixed delay (slept outside its lock)."""

    def __init__(self, delay: float) -> None:
        super().__init__(responder=lambda body: ("tool", {f"input_{i}": f"text {i}" for i in range(1, 6)}))
        self.delay = delay

    def _answer_chat(self, handler: Any, body: dict[str, Any], item: tuple[str, Any]) -> None:
        time.sleep(self.delay)
        super()._answer_chat(handler, body, item)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def generation_requests(n: int) -> list[list[dict[str, str]]]:
    """n distinct generation requests, rendered from p2m's own templates for the demo task."""
    spec = parse_task(DEMO_PROMPT.read_text(encoding="utf-8"))
    out = []
    for i in range(n):
        label = spec.labels[i % len(spec.labels)]
        shown = [e for e in spec.examples if e.output == label]
        out.append([{"role": "system", "content": render("generate_examples_system", label=label)},
                    {"role": "user", "content": render("generate_examples", instruction=spec.instruction + f" ({i})",
                                                       labels=spec.labels, examples=shown, n=5, label=label,
                                                       descriptions=spec.label_descriptions, topic=None, guidance="")}])
    return out


def throughput(llm: LLM, concurrency: int, n_requests: int) -> dict[str, Any]:
    """Requests/s of `llm.call_tool` over n distinct generation requests run by `concurrency` threads."""
    from p2m_engine.data.synth import _schema

    requests = generation_requests(n_requests)
    tokens0 = llm.usage.tokens
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda m: llm.call_tool(m, "write_inputs", _schema(5, 300), temperature=0.8, max_tokens=512),
                      requests))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": n_requests, "wall_s": round(wall, 2),
            "requests_per_s": round(n_requests / wall, 2), "tokens_per_s": round((llm.usage.tokens - tokens0) / wall, 1)}


def _serve_standin(conn: Any, delay: float) -> None:
    """Child process: run the stand-in until the parent closes the pipe (so it does not share p2m's GIL)."""
    with StandIn(delay) as server:
        conn.send(server.base_url)
        try:
            conn.recv()
        except EOFError:
            pass


def standin_figures() -> list[dict[str, Any]]:
    import multiprocessing as mp

    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve_standin, args=(child, STANDIN_LATENCY_S), daemon=True)
    proc.start()
    rows = []
    try:
        base_url = parent.recv()
        llm = LLM(base_url, "stand-in", api_key="unused", cache=None, timeout=30, max_retries=0)
        for c in CONCURRENCY:
            fig = throughput(llm, c, n_requests=max(20, c * 10))
            ideal = c / STANDIN_LATENCY_S
            rows.append({**fig, "server": "stand-in 200 ms", "ideal_per_s": ideal,
                         "share_of_ideal": round(fig["requests_per_s"] / ideal, 3)})
    finally:
        parent.send("stop")
        proc.join(timeout=10)
    return rows


def embedded_figures() -> list[dict[str, Any]]:
    from p2m_engine.llm.embedded import EMBEDDED_MODEL, LlamaServer, embedded_model_path

    rows = []
    with tempfile.TemporaryDirectory() as logs, LlamaServer(embedded_model_path(), alias=EMBEDDED_MODEL,
                                                            log_path=Path(logs) / "server.log") as server:
        llm = LLM(server.base_url, EMBEDDED_MODEL, cache=None, timeout=900, max_retries=1)
        for c in CONCURRENCY:
            rows.append({**throughput(llm, c, n_requests=max(4, c)), "server": "embedded llama.cpp"})
    return rows


def training_figures(steps: int = 20, batch: int = 16) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Examples/s of each student type for `steps` optimizer steps; returns the trained models for latency."""
    from p2m_engine.data.datasets import load_examples
    from p2m_engine.errors import P2MError
    from p2m_engine.students.models import search_models
    from p2m_engine.students import train_student
    from p2m_engine.students.train import TrainConfig
    from p2m_engine.types import TaskSpec

    tasks: dict[str, tuple[TaskSpec, Path]] = {
        "classification": (parse_task(DEMO_PROMPT.read_text(encoding="utf-8")), DEMO_DATA)}
    for name, folder in (("extractive-qa", "squad"), ("generation", "conala_en")):
        path = SHARED / folder / ("train.jsonl" if (SHARED / folder / "train.jsonl").is_file() else "dev.jsonl")
        if path.is_file():
            tasks[name] = (parse_task((SHARED / folder / "prompt.txt").read_text(encoding="utf-8")), path)
    rows, models = [], {}
    out = Path(tempfile.mkdtemp(prefix="p2m-speed-"))
    for task_type, (spec, data) in tasks.items():
        rows_ = load_examples(data)[: steps * batch]
        try:
            base = search_models(task_type)[0]
            config = TrainConfig(base_model=base.path, max_steps=steps, batch_size=batch, min_steps=0)
            result = train_student(spec, rows_, [], out / task_type, config)
        except P2MError as e:
            rows.append({"student": task_type, "status": str(e)})
            continue
        rows.append({"student": task_type, "base": base.name, "steps": steps, "batch": batch,
                     "seconds": round(result.seconds, 1), "examples_per_s": round(steps * batch / result.seconds, 1),
                     "bf16": result.config.get("bf16_used")})
        models[task_type] = out / task_type
    return rows, models


def latency_figures(models: dict[str, Path], with_teacher: bool) -> list[dict[str, Any]]:
    """p50/p95 per call at batch 1 and 32, student vs teacher (the teacher answers one request at a time)."""
    from p2m_engine.data.datasets import load_examples
    from p2m_engine.students import predictor

    texts = [e.input for e in load_examples(DEMO_DATA)][:64]
    rows = []

    def measure(name: str, fn: Callable[[list[str]], Any], batch: int, n: int) -> None:
        times = []
        for i in range(n):
            chunk = texts[(i * batch) % len(texts):][:batch] or texts[:batch]
            started = time.perf_counter()
            fn(chunk)
            times.append((time.perf_counter() - started) * 1000)
        rows.append({"model": name, "batch": batch, "calls": n, "p50_ms": _pct(times, 0.5), "p95_ms": _pct(times, 0.95),
                     "per_example_ms": round(statistics.median(times) / batch, 2)})

    if "classification" in models:
        run = predictor("classification", models["classification"])
        measure("student (MiniLM classifier)", run, 1, 50)
        measure("student (MiniLM classifier)", run, 32, 10)
    if with_teacher:
        from p2m_engine.eval.baselines import teacher_classify
        from p2m_engine.llm.embedded import EMBEDDED_MODEL, LlamaServer, embedded_model_path

        spec = parse_task(DEMO_PROMPT.read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory() as logs, LlamaServer(embedded_model_path(), alias=EMBEDDED_MODEL,
                                                                log_path=Path(logs) / "server.log") as server:
            llm = LLM(server.base_url, EMBEDDED_MODEL, cache=None, timeout=900, max_retries=1)
            measure("teacher (Qwen2.5-0.5B, llama.cpp)", lambda xs: teacher_classify(spec, llm, xs), 1, 20)
            measure("teacher (Qwen2.5-0.5B, llama.cpp)", lambda xs: teacher_classify(spec, llm, xs), 32, 2)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-embedded", action="store_true", help="no embedded-LLM figures (no llama.cpp needed)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    args = ap.parse_args()
    import torch

    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
    }
    figures["generation_throughput"] = standin_figures() + ([] if args.skip_embedded else embedded_figures())
    figures["training"], models = training_figures()
    figures["latency"] = latency_figures(models, with_teacher=not args.skip_embedded)
    md = [f"`{figures['command']}` on {figures['machine']}, {figures['date']}\n"]
    for section in ("generation_throughput", "training", "latency"):
        md += [f"\n## {section}\n\n", table(figures[section])]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    (args.out / "speed.md").write_text("".join(md), encoding="utf-8")
    print("".join(md))


if __name__ == "__main__":
    main()
