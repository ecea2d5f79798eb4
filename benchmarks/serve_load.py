"""Load figures of `p2m serve` (a script that prints figures; never a timed test).

Starts `p2m serve RUN` as a child process on a free loopback port, then drives it from this process with
1, 8 and 32 concurrent clients, each sending a bounded number of single-input requests. Prints requests/s,
p50/p99 latency and the error count per level, and writes them to --out.

It does so once per mode: `no-batching` (`p2m serve --no-batching`: one request per forward pass, in turn, as
before dynamic batching) and `batching` (the default: concurrent requests share a forward pass), so the two
are measured on the same machine, model and load.

Usage:
    .venv/bin/python benchmarks/serve_load.py RUN [--requests 200] [--modes no-batching,batching]
                                                  [--out benchmarks/results/serve]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
TEXTS = ["Free entry in 2 a wkly comp to win FA Cup final tkts", "Ok lar... Joking wif u oni...",
         "I'll call you later when I get home", "WINNER!! You have been selected to receive a prize"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"p2m serve exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("p2m serve did not become ready")


def one_request(port: int, i: int) -> tuple[bool, float]:
    body = json.dumps({"inputs": [TEXTS[i % len(TEXTS)]]})
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 200
        conn.close()
    except OSError:
        ok = False
    return ok, (time.perf_counter() - started) * 1000


def level(port: int, clients: int, requests: int) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda i: one_request(port, i), range(requests)))
    wall = time.perf_counter() - started
    times = sorted(t for _, t in results)
    return {"clients": clients, "requests": requests, "requests_per_s": round(requests / wall, 1),
            "p50_ms": round(times[len(times) // 2], 1), "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 1),
            "errors": sum(not ok for ok, _ in results)}


MODES = {"no-batching": ["--no-batching"], "batching": []}


def measure(run: Path, mode: str, requests: int) -> list[dict[str, Any]]:
    """Start `p2m serve` in `mode` and drive it at every concurrency level."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "serve", str(run), "--port", str(port), *MODES[mode]],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        return [{"mode": mode, **level(port, c, requests)} for c in LEVELS]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder (or model folder) with a trained model")
    ap.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    ap.add_argument("--modes", default="no-batching,batching", help="comma-separated: no-batching, batching")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(unknown)}; use {', '.join(MODES)}")
    rows = [r for mode in modes for r in measure(args.run, mode, args.requests)]
    lines = ["| mode | clients | requests | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
              f"| {r['errors']} |" for r in rows]
    text = (f"`python benchmarks/serve_load.py {args.run} --modes {','.join(modes)}` on "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}\n\n" + "\n".join(lines) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (args.out / "serve_load.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
