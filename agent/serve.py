"""`p2m serve`: the student behind a small JSON HTTP endpoint (stdlib server, loopback by default, bounded input).

    GET  /health               -> {"status": "ok", "task_type": ..., "model": ...}
    POST /predict {"inputs": ["...", ...]} or {"input": "..."}
                               -> {"outputs": [...]} (classification adds "probabilities")

Bad JSON or a wrong shape answers 400, a body over the byte limit 413, too many or too long inputs 422; the
server never echoes request bodies into its log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

from p2m_engine.errors import ModelError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeLimits:
    """What one request may carry."""

    max_bytes: int = 1_000_000
    max_batch: int = 64
    max_chars: int = 10_000


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
    for task_file in (model_dir / "p2m_task.json", model_dir.parent / "task.json"):
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
    if task_type == "classification":
        from p2m_engine.evaluate import load_classifier, predict

        with loading(model_dir):
            loaded = load_classifier(model_dir)

        def classify(inputs: list[str]) -> dict[str, Any]:
            pairs = predict(model_dir, inputs, loaded=loaded)
            return {"outputs": [label for label, _ in pairs], "probabilities": [round(p, 4) for _, p in pairs]}

        return classify
    from p2m_engine.students import predictor

    with loading(model_dir):
        run = predictor(task_type, model_dir)

    def generate(inputs: list[str]) -> dict[str, Any]:
        with loading(model_dir):  # this student loads its files on each call
            return {"outputs": run(inputs)}

    return generate


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


def make_server(model_dir: Path, task_type: str, host: str = "127.0.0.1", port: int = 8000,
                limits: ServeLimits = ServeLimits()) -> ThreadingHTTPServer:
    """Load the student and return a ready (not yet serving) HTTP server; `serve_forever()` runs it."""
    predict = load_predict(model_dir, task_type)
    lock = threading.Lock()  # one forward pass at a time: the CPU is the limit, and torch modules are not re-entrant
    info = {"status": "ok", "task_type": task_type, "model": model_dir.resolve().name}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            try:
                inputs = parse_inputs(self.rfile.read(length), limits)
            except _BadRequest as e:
                self._send(e.status, {"error": str(e)})
                return
            with lock:
                result = predict(inputs)
            self._send(200, result)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
