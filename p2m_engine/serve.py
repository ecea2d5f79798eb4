"""`p2m serve`: the student behind a small JSON HTTP endpoint (stdlib server, loopback by default, bounded input).

    GET  /health               -> {"status": "ok", "task_type": ..., "model": ...}
    POST /predict {"inputs": ["...", ...]} or {"input": "..."}
                               -> {"outputs": [...]} (classification adds "probabilities")

Bad JSON or a wrong shape answers 400, a body over the byte limit 413, too many or too long inputs 422; the
server never echoes request bodies into its log. Concurrent requests share forward passes (dynamic batching,
`Batcher`); a connection silent for `read_timeout` seconds is closed; clients that disconnect are not errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

from p2m_engine.errors import ModelError, P2MError
from p2m_engine.students import TASK_FILE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeLimits:
    """What one request may carry, and how the server spends its threads and its model."""

    max_bytes: int = 1_000_000
    max_batch: int = 64
    max_chars: int = 10_000
    read_timeout: float = 30.0
    """Seconds a connection may stay silent (idle, or half-sent) before the server closes it."""
    batch_wait_ms: float = 2.0
    """How long the first waiting request waits for others to share its forward pass (0: only those already queued)."""
    merge_inputs: int = 64
    """Most inputs of concurrent requests run in one forward pass (a larger request runs alone)."""
    batching: bool = True
    """Merge concurrent requests into one forward pass; off: one request per pass, in turn."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_batch", "max_chars", "merge_inputs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise P2MError(f"--{name.replace('_', '-')} must be a positive whole number, got {value!r}.")
        if not 0 < self.read_timeout < float("inf"):
            raise P2MError(f"--read-timeout must be a positive number of seconds, got {self.read_timeout!r}.")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise P2MError(f"--batch-wait-ms must be between 0 and 1000, got {self.batch_wait_ms!r}.")


def _run_of(model_dir: Path) -> Path:
    """The run folder a model folder belongs to (itself when it is not inside one), for `p2m train RUN`."""
    for folder in (model_dir, model_dir.parent):
        if (folder / "task.json").is_file():
            return folder
    return model_dir


def resolve_model(path: Path) -> tuple[Path, str]:
    """The model folder and task type of a run folder or of a model folder inside one.

    A run folder (it holds task.json) is served from its `model/` only: its own config.json is the build's
    settings, not a model's.

    Raises:
        ModelError: no such folder, or no trained model there (the message says how to train one).
    """
    if not path.is_dir():
        raise ModelError(f"No run or model folder at {path}.")
    if (path / "task.json").is_file():
        model_dir = path / "model"
        if not (model_dir / "config.json").is_file():
            what = "is missing" if not model_dir.exists() else "has no config.json"
            raise ModelError(f"{path} has no trained model ({model_dir} {what}); train one with `p2m train {path}`.")
    else:
        model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
        if not (model_dir / "config.json").is_file():
            raise ModelError(f"No trained model in {path}.")
    for task_file in (model_dir / TASK_FILE, model_dir.parent / "task.json"):
        if task_file.is_file():
            try:
                task = json.loads(task_file.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise ModelError(f"{task_file} is damaged ({e}); train the model again with "
                                 f"`p2m train {_run_of(model_dir)}`.") from None
            return model_dir, str(task.get("task_type", "classification")) if isinstance(task, dict) else "classification"
    return model_dir, "classification"


@contextlib.contextmanager
def loading(model_dir: Path) -> Iterator[None]:
    """Turn the errors of loading damaged model files into one ModelError that says how to get a model back.

    transformers raises OSError for a missing weights or tokenizer file, safetensors its own error for a
    corrupt header, torch RuntimeError for a corrupt pickle, json ValueError for a damaged config.
    """
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"The model in {model_dir} cannot be loaded: its files are missing or damaged "
                         f"({type(e).__name__}: {first}). Train it again with `p2m train {_run_of(model_dir)}`.") from None


def load_predict(model_dir: Path, task_type: str) -> Callable[[list[str]], dict[str, Any]]:
    """A function from inputs to the response body, loading the model once.

    Raises:
        ModelError: the model's files are missing or damaged.
    """
    from p2m_engine.students import load_student

    with loading(model_dir):
        run = load_student(task_type, model_dir)

    def answer(inputs: list[str]) -> dict[str, Any]:
        with loading(model_dir):  # some students (QA, generation) read their files on each call
            pairs = run(inputs)
        body: dict[str, Any] = {"outputs": [out for out, _ in pairs]}
        if pairs and all(p is not None for _, p in pairs):  # a classifier's confidence
            body["probabilities"] = [round(float(p), 4) for _, p in pairs]  # type: ignore[arg-type]
        return body

    return answer


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_inputs(raw: bytes, limits: ServeLimits) -> list[str]:
    """The inputs of a /predict body, checked against the limits (raises _BadRequest with a status)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _BadRequest(400, f"the body is not JSON: {e}") from None
    except RecursionError:  # a few KB of nested brackets exhaust the parser's stack
        raise _BadRequest(400, "the body is nested too deeply") from None
    if not isinstance(body, dict) or ("inputs" not in body and "input" not in body):
        raise _BadRequest(400, 'send {"inputs": ["text", ...]} or {"input": "text"}')
    inputs = body["inputs"] if "inputs" in body else [body["input"]]
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        raise _BadRequest(400, "inputs must be a list of strings")
    if not inputs:
        raise _BadRequest(422, "inputs is empty")
    if len(inputs) > limits.max_batch:
        raise _BadRequest(422, f"at most {limits.max_batch} inputs per request; got {len(inputs)}")
    longest = max(len(x) for x in inputs)
    if longest > limits.max_chars:
        raise _BadRequest(422, f"an input has {longest} characters; the limit is {limits.max_chars}")
    return inputs


class _Job:
    """One request's inputs waiting for a forward pass, and its share of the result."""

    def __init__(self, inputs: list[str]) -> None:
        self.inputs = inputs
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Dynamic batching: one worker thread runs the forward passes; concurrent requests share one.

    The first waiting request waits at most `wait_s` for others; their inputs (at most `max_inputs`
    together) go through the model at once and each request gets its slice of every result list. A torch
    module is never run by two threads at once, and a queue of small requests costs one pass, not one each.
    """

    def __init__(self, predict: Callable[[list[str]], dict[str, Any]], max_inputs: int, wait_s: float) -> None:
        self._predict = predict
        self._max = max_inputs
        self._wait = wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._carry: _Job | None = None
        self._thread = threading.Thread(target=self._loop, name="p2m-batcher", daemon=True)
        self._thread.start()

    def __call__(self, inputs: list[str]) -> dict[str, Any]:
        job = _Job(inputs)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        self._queue.put(None)

    def _next_batch(self) -> list[_Job] | None:
        first = self._carry or self._queue.get()
        self._carry = None
        if first is None:
            return None
        jobs, n = [first], len(first.inputs)
        deadline = time.monotonic() + self._wait
        while n < self._max:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0)) if self._wait else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop once this batch is done
                break
            if n + len(job.inputs) > self._max:
                self._carry = job  # does not fit: it opens the next batch
                break
            jobs.append(job)
            n += len(job.inputs)
        return jobs

    def _loop(self) -> None:
        while (jobs := self._next_batch()) is not None:
            merged = [x for job in jobs for x in job.inputs]
            try:
                result = self._predict(merged)
            except Exception as e:  # noqa: BLE001 - handed to every waiting request, which answers 500
                for job in jobs:
                    job.error = e
                    job.done.set()
                continue
            start = 0
            for job in jobs:
                end = start + len(job.inputs)
                job.result = {k: v[start:end] if isinstance(v, list) else v for k, v in result.items()}
                job.done.set()
                start = end


class ModelServer(ThreadingHTTPServer):
    """The stdlib threading server, quiet about clients that go away, and stopping its batcher on close."""

    daemon_threads = True
    request_queue_size = 128  # connections waiting to be accepted (the default 5 refuses bursts)
    batcher: Batcher | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):  # the client left or went silent: not our fault
            logger.debug("%s: %s", client_address, type(error).__name__)
            return
        logger.error("error while serving %s", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        if self.batcher is not None:
            self.batcher.close()


def make_server(model_dir: Path, task_type: str, host: str = "127.0.0.1", port: int = 8000,
                limits: ServeLimits = ServeLimits()) -> ModelServer:
    """Load the student and return a ready (not yet serving) HTTP server; `serve_forever()` runs it.

    Raises:
        ModelError: the model's files are missing or damaged.
    """
    predict = load_predict(model_dir, task_type)
    batcher = Batcher(predict, max(limits.merge_inputs, limits.max_batch) if limits.batching else 1,
                      limits.batch_wait_ms / 1000 if limits.batching else 0.0)
    info = {"status": "ok", "task_type": task_type, "model": model_dir.resolve().name}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = limits.read_timeout  # a silent or half-sent connection is closed, freeing its thread

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - request lines only, at debug
            logger.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") in ("/health", ""):
                self._send(200, info)
            else:
                self._send(404, {"error": f"no route {self.path}; use GET /health or POST /predict"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length") or -1)
            except ValueError:
                length = -1
            if self.path.rstrip("/") != "/predict":
                self.close_connection = True
                self._send(404, {"error": f"no route {self.path}; use POST /predict"})
                return
            if length < 0:
                self.close_connection = True
                self._send(411, {"error": "a Content-Length header is required"})
                return
            if length > limits.max_bytes:
                self.close_connection = True  # the unread body must not be parsed as the next request
                self._send(413, {"error": f"the body has {length} bytes; the limit is {limits.max_bytes}"})
                return
            raw = self.rfile.read(length)
            if len(raw) < length:  # the client closed before sending its whole body
                self.close_connection = True
                return
            try:
                inputs = parse_inputs(raw, limits)
            except _BadRequest as e:
                self._send(e.status, {"error": str(e)})
                return
            try:
                result = batcher(inputs)
            except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a plain 500
                logger.exception("prediction failed")
                self.close_connection = True
                self._send(500, {"error": "the model failed on this request; see the server log"})
                return
            self._send(200, result)

    server = ModelServer((host, port), Handler)
    server.batcher = batcher
    return server
