"""A real HTTP server speaking enough of the OpenAI chat-completions API for client tests.

Usage::

    with OpenAIStub([("tool", {"inputs": ["a"]}), ("status", 500)]) as stub:
        llm = LLM(base_url=stub.base_url, model="m", api_key="test")
        ...
        assert stub.chat_requests[0]["tool_choice"] == ...

Script items for ``POST /v1/chat/completions`` (consumed one per request, in order):

- ``("tool", {...})``: a forced function call; the function name is the one the request's
  ``tool_choice`` asked for, the arguments are the dict serialised as a JSON string.
- ``("raw_args", "string")``: a function call whose arguments string is sent verbatim (e.g. broken JSON).
- ``("content", "text")``: a plain assistant message, no tool calls.
- ``("status", code)``: an HTTP error with an OpenAI-style JSON error body.
- ``("logprobs", {"token": logprob, ...})``: a one-token answer (the most likely token) whose
  ``logprobs.content[0].top_logprobs`` lists the given alternatives.

When the script is exhausted every further chat request answers HTTP 500, so an unexpected extra
call shows up as a failure (and in ``stub.chat_requests``).
``GET /v1/models`` answers a model list (or ``models_status`` when it is not 200) and does not
consume the script.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


_KINDS = ("tool", "raw_args", "content", "status", "logprobs")


def _checked(items: Iterable[tuple[str, Any]], kinds: tuple[str, ...] = _KINDS) -> list[tuple[str, Any]]:
    out = list(items)
    for item in out:
        if not (isinstance(item, tuple) and len(item) == 2 and item[0] in kinds):
            raise ValueError(f"bad stub script item {item!r}; expected (kind, value) with kind in {kinds}")
    return out


class OpenAIStub:
    """A scripted OpenAI-compatible endpoint on 127.0.0.1, run in a background thread."""

    KINDS = _KINDS  # script item kinds this server understands (subclasses add their own)

    def __init__(
        self,
        script: Iterable[tuple[str, Any]] = (),
        *,
        model: str = "stub-model",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        models_status: int = 200,
        retry_after_ms: int | None = 5,
        responder: Any = None,
        delay_s: float = 0.0,
    ) -> None:
        """
        Args:
            script: behaviours for successive chat-completion requests.
            model: id listed by /v1/models (responses echo the requested model).
            prompt_tokens / completion_tokens: the usage block of every successful completion.
            models_status: HTTP status of GET /v1/models (200 = model list).
            retry_after_ms: sent as `retry-after-ms` on error answers so SDK retries are quick;
                None sends no header (the SDK then uses its own exponential backoff).
            responder: called with the request body once the script is used up; returns a script item.
                Without it, an exhausted script answers HTTP 500.
            delay_s: seconds each chat completion takes before it is answered (a slow endpoint, so that
                a test can interrupt a client in the middle of its work).
        """
        self.delay_s = delay_s
        self.responder = responder
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.models_status = models_status
        self.retry_after_ms = retry_after_ms
        self._script: deque[tuple[str, Any]] = deque(_checked(script, self.KINDS))
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # every request: method, path, headers, body
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "OpenAIStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at shutdown

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
                pass

            def do_GET(self) -> None:  # noqa: N802
                stub._record(self, None)
                if self.path.rstrip("/") == "/v1/models":
                    if stub.models_status != 200:
                        stub._send_error(self, stub.models_status)
                    else:
                        stub._send_json(self, 200, {
                            "object": "list",
                            "data": [{"id": stub.model, "object": "model", "created": 1700000000, "owned_by": "stub"}],
                        })
                else:
                    stub._send_error(self, 404)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:  # the client died while sending (a killed build): no request was made
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_unparseable": raw.decode("utf-8", "replace")}
                stub._record(self, body)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    stub._send_error(self, 404)
                    return
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                with stub._lock:
                    if stub._script:
                        item = stub._script.popleft()
                    else:
                        item = stub.responder(body) if stub.responder else ("status", 500)
                stub._answer_chat(self, body, item)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "OpenAIStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ inspection
    @property
    def port(self) -> int:
        assert self._server is not None, "stub not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of every POST /v1/chat/completions received, in order."""
        with self._lock:
            return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"].endswith("/chat/completions")]

    @property
    def remaining(self) -> int:
        """Script items not consumed yet."""
        with self._lock:
            return len(self._script)

    def push(self, *items: tuple[str, Any]) -> None:
        """Append behaviours to the script."""
        with self._lock:
            self._script.extend(_checked(items, self.KINDS))

    # ------------------------------------------------------------------ internals
    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        with self._lock:
            self.requests.append({
                "method": handler.command,
                "path": handler.path,
                "headers": {k.lower(): v for k, v in handler.headers.items()},
                "body": body,
            })

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, payload: Any,
                   headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    def _send_error(self, handler: BaseHTTPRequestHandler, status: int) -> None:
        headers = {}
        if self.retry_after_ms is not None and (status == 429 or status >= 500):
            headers["retry-after-ms"] = str(self.retry_after_ms)
        err_type = _ERROR_TYPES.get(status, "server_error")
        self._send_json(handler, status, {
            "error": {"message": f"stub error {status}", "type": err_type, "param": None, "code": str(status)},
        }, headers)

    def _answer_chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], item: tuple[str, Any]) -> None:
        kind, value = item
        if kind == "status":
            self._send_error(handler, int(value))
            return
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        if kind in ("tool", "raw_args"):
            choice = body.get("tool_choice")
            name = None
            if isinstance(choice, dict):
                name = (choice.get("function") or {}).get("name")
            if name is None and body.get("tools"):
                name = body["tools"][0].get("function", {}).get("name")
            arguments = json.dumps(value) if kind == "tool" else str(value)
            message["tool_calls"] = [{
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name or "unknown", "arguments": arguments},
            }]
            finish = "tool_calls"
        elif kind == "content":
            message["content"] = str(value)
        logprobs = None
        if kind == "logprobs":
            top = sorted(value.items(), key=lambda x: -x[1])
            message["content"] = top[0][0]
            alternatives = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
            logprobs = {"content": [{**alternatives[0], "top_logprobs": alternatives}]}
            finish = "length"
        self._send_json(handler, 200, self._completion(body, [
            {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}]))

    def _completion(self, body: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
        """A chat.completion object with the given choices and this stub's usage block."""
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "system_fingerprint": "fp_stub",
            "choices": choices,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }


class SmsTeacher:
    """Answers the demo sms_spam build like a capable API model: unique examples for generation requests, and the
    planner's call through `choose` (the first allowed action; subclasses script it)."""

    def __init__(self) -> None:
        self.n = 0

    def choose(self, allowed: list[str]) -> tuple[str, Any]:
        return "tool", {"action": allowed[0], "reason": "next in order"}

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        name = body["tool_choice"]["function"]["name"]
        params = body["tools"][0]["function"]["parameters"]
        if name == "choose_action":
            return self.choose(params["properties"]["action"]["enum"])
        label = "spam" if 'label is "spam"' in body["messages"][-1]["content"] else "ham"
        out = {}
        for key in params["required"]:
            self.n += 1
            out[key] = f"{label} example number {self.n} about topic {self.n * 7 % 13}"
        return "tool", out


def build_through_stub(responder: Any, key: str, out: Path, student: Path, retrieved: int,
                       per_label: int = 3) -> tuple[Any, list[Any]]:
    """`p2m build` of the demo sms_spam task through the OpenAI path against a stub with `responder`, the key in
    the environment; returns the CliRunner result and the requests the stub saw."""
    from click.testing import CliRunner

    from agent.cli import cli
    from tests.conftest import DEMO_HUB, ROOT

    with OpenAIStub(responder=responder, model="gpt-test") as stub:
        result = CliRunner().invoke(
            cli,
            ["build", str(ROOT / "examples" / "sms_spam.txt"), "--llm", "openai", "--base-url", stub.base_url,
             "--model", "gpt-test", "--hub", str(DEMO_HUB), "--base-model", str(student), "--out", str(out),
             "--budget", f"per_label={per_label},epochs=1,retrieved={retrieved},iterations=1", "--json"],
            env={"OPENAI_API_KEY": key},
        )
        return result, list(stub.requests)
