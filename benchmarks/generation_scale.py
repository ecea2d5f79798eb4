"""Generation at scale (a script that prints figures; never a timed test).

1. Examples per second of p2m's classification generation (`generate_labelled_examples`, the whole loop: prompts,
   requests in flight together, filters, append-only writes) at --concurrency 1, 4, 16 and 64, against a stand-in
   OpenAI-compatible server on 127.0.0.1 that answers each request after 200 ms with 64 slots. The ideal at
   concurrency c is c / 0.2 requests/s; the share lost is p2m's own overhead (the client's work per request,
   filters, writes) and, at high concurrency, the two cores the client and the stand-in share.
2. A simulated large build: 1,000, 3,000 and 10,000 generated examples at concurrency 16 against the same server
   limited to 16 slots: wall time, requests/s and peak memory, to show how they grow with the number of examples.

The stand-in runs in a child process (it must not share p2m's GIL) and writes a new text for every requested
input, so every example is new and the figures measure the machinery, not the filters' rejections.

Usage:
    .venv/bin/python benchmarks/generation_scale.py [--out benchmarks/results/generation_scale]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.speed import table  # noqa: E402  (the same markdown tables as the other speed figures)
from p2m_engine.data.synth import SynthConfig, generate_labelled_examples  # noqa: E402
from p2m_engine.llm import LLM  # noqa: E402
from p2m_engine.task import parse_task  # noqa: E402
from tests.openai_stub import OpenAIStub  # noqa: E402

LATENCY_S = 0.2
CONCURRENCY = (1, 4, 16, 64)
SIZES = (1_000, 3_000, 10_000)
BATCH = 5
PROMPT = ROOT / "examples" / "sms_spam.txt"
WORDS = ("parcel", "meeting", "invoice", "weekend", "ticket", "offer", "dinner", "account", "train", "reward")


class SlowServer(OpenAIStub):
    """Answers every chat request after LATENCY_S with new texts; at most `slots` requests are served at once."""

    def __init__(self, slots: int) -> None:
        counter = itertools.count()
        self.slots = threading.Semaphore(slots)

        def respond(body: dict[str, Any]) -> tuple[str, Any]:
            keys = body["tools"][0]["function"]["parameters"]["properties"]
            out = {}
            for key in keys:
                i = next(counter)
                out[key] = f"note {i}: the {WORDS[i % 10]} for {WORDS[(i // 10) % 10]} is {i * 7919 % 100003} today"
            return "tool", out

        super().__init__(responder=respond)

    def _answer_chat(self, handler: Any, body: dict[str, Any], item: tuple[str, Any]) -> None:
        with self.slots:
            time.sleep(LATENCY_S)
        super()._answer_chat(handler, body, item)


def _serve(conn: Any, slots: int) -> None:
    with SlowServer(slots) as server:
        conn.send(server.base_url)
        try:
            conn.recv()
        except EOFError:
            pass


def server(slots: int) -> tuple[str, Any, Any]:
    import multiprocessing as mp

    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve, args=(child, slots), daemon=True)
    proc.start()
    return parent.recv(), parent, proc


def run(base_url: str, examples: int, concurrency: int) -> dict[str, Any]:
    """Generate `examples` (split over the task's labels) and time it."""
    spec = parse_task(PROMPT.read_text(encoding="utf-8"))
    llm = LLM(base_url, "stand-in", api_key="unused", cache=None, timeout=60, max_retries=0)
    config = SynthConfig(per_label=examples // len(spec.labels), batch_size=BATCH, concurrency=concurrency,
                         attributes=False)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = generate_labelled_examples(spec, llm, Path(tmp) / "generated.jsonl", config)
        wall = time.perf_counter() - started
    return {"concurrency": concurrency, "examples": result.count, "requests": result.llm_calls,
            "wall_s": round(wall, 2), "examples_per_s": round(result.count / wall, 1),
            "requests_per_s": round(result.llm_calls / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation_scale")
    args = ap.parse_args()
    figures: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "command": "python benchmarks/generation_scale.py " + " ".join(sys.argv[1:]),
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    base_url, conn, proc = server(slots=64)
    try:
        rows = []
        for c in CONCURRENCY:
            fig = run(base_url, examples=max(100, c * 40), concurrency=c)
            ideal = c / LATENCY_S
            rows.append({**fig, "ideal_requests_per_s": ideal, "share_of_ideal": round(fig["requests_per_s"] / ideal, 3)})
            print(rows[-1], flush=True)
        figures["concurrency"] = rows
    finally:
        conn.send("stop")
        proc.join(timeout=10)
    base_url, conn, proc = server(slots=16)
    try:
        rows = []
        for n in SIZES:
            fig = run(base_url, examples=n, concurrency=16)
            rows.append({**fig, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
            print(rows[-1], flush=True)
        figures["large_build"] = rows
    finally:
        conn.send("stop")
        proc.join(timeout=10)
    md = [f"`{figures['command']}` on {figures['machine']}, {figures['date']}\n",
          f"\n## Concurrency (stand-in: {LATENCY_S * 1000:.0f} ms per request, 64 slots)\n\n", table(figures["concurrency"]),
          "\n## A large build (concurrency 16, stand-in with 16 slots; peak RSS of the whole process so far)\n\n",
          table(figures["large_build"])]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text("".join(md), encoding="utf-8")
    print("".join(md))


if __name__ == "__main__":
    main()
