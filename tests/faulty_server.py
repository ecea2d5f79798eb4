"""An OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on a schedule, for reliability tests.

It is the scripted stub of ``tests/openai_stub.py`` plus one script kind, ``("fault", NAME)`` (or
``("fault", (NAME, item))`` for ``slow``, which answers ``item`` late), and a ``FaultSchedule`` that turns
chosen chat requests into faults before the normal responder is asked: a request that fails never reaches
the responder, so a counting teacher answers the same sequence with or without faults.

Faults (``FAULTS``):

- ``429``: HTTP 429 with ``Retry-After`` (seconds, ``retry_after``).
- ``500`` / ``503``: HTTP errors with an OpenAI-style body and no Retry-After.
- ``timeout``: no answer for ``hang`` seconds (past the client's timeout), then the socket is closed.
- ``reset``: the connection is reset (RST) without an answer.
- ``truncated``: HTTP 200 announcing the full Content-Length, half the body sent, then the socket closed.
- ``malformed``: HTTP 200, JSON content type, a body that is cut-off JSON (Content-Length matches it).
- ``wrong_schema``: a valid completion whose tool-call arguments miss a required field.
- ``empty_choices``: a valid completion with ``"choices": []``.
- ``error_body``: HTTP 200 whose JSON is an error object, not a completion (seen behind some proxies).
- ``slow``: the normal answer, ``slow`` seconds late (under the client's timeout).

Not in ``FAULTS`` (a hostile server, for the security tests): ``echo_auth`` answers HTTP 400, 401 or 500
(``("fault", ("echo_auth", status))``) with the request's Authorization header in the error message.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Sequence

from tests.openai_stub import _KINDS, OpenAIStub

FAULTS = ("429", "500", "503", "timeout", "reset", "truncated", "malformed", "wrong_schema", "empty_choices",
          "error_body", "slow")


@dataclass
class FaultSchedule:
    """Which chat requests fail, and how: one request in `every`, from request `start` on, cycling `faults`.

    Deterministic, so two runs see the same faults; `every=1` makes the service fail permanently from `start`.
    """

    faults: Sequence[str]
    every: int = 3
    start: int = 0
    limit: int | None = None  # stop injecting after this many faults

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown or not self.faults or self.every < 1:
            raise ValueError(f"bad fault schedule {self!r}; faults are {FAULTS}")

    def __call__(self, index: int) -> str | None:
        """The fault for the chat request with this 0-based index, or None for a normal answer."""
        if index < self.start or (index - self.start) % self.every:
            return None
        n = (index - self.start) // self.every
        if self.limit is not None and n >= self.limit:
            return None
        return self.faults[n % len(self.faults)]


class FaultyServer(OpenAIStub):
    """The scripted stub, misbehaving on a `FaultSchedule` (and on ``("fault", NAME)`` script items)."""

    KINDS = _KINDS + ("fault",)

    def __init__(self, script: Sequence[tuple[str, Any]] = (), *, schedule: Callable[[int], str | None] | None = None,
                 responder: Any = None, hang: float = 2.0, slow: float = 0.2, retry_after: str = "0.2",
                 **kwargs: Any) -> None:
        """
        Args:
            script: behaviours for successive chat requests (as for OpenAIStub, plus ``("fault", ...)``).
            schedule: maps a chat request's index to a fault name or None; checked before the responder.
            responder: answers the requests that are not faulty (as for OpenAIStub).
            hang: seconds a ``timeout`` fault holds the request (make it longer than the client's timeout).
            slow: seconds a ``slow`` answer is late (shorter than the client's timeout).
            retry_after: the ``Retry-After`` header of a ``429``.
        """
        kwargs.setdefault("retry_after_ms", None)  # only the 429 fault tells the client when to retry
        super().__init__(script, responder=self._dispatch, **kwargs)
        self.schedule = schedule
        self.inner_responder = responder
        self.hang = hang
        self.slow = slow
        self.retry_after = retry_after
        self.injected: Counter[str] = Counter()  # faults sent, by name
        self.answered = 0  # requests answered normally (including slow ones)
        self._index = 0  # chat requests that reached the responder stage
        self._closing = threading.Event()

    def close(self) -> None:
        self._closing.set()  # wake handlers that hang, so that shutdown is quick
        super().close()

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, body: dict[str, Any]) -> tuple[str, Any]:
        """Called under the stub's lock once the script is used up: a fault, or the inner responder's answer."""
        index = self._index
        self._index += 1
        fault = self.schedule(index) if self.schedule else None
        if fault is None or fault == "slow":
            item = self.inner_responder(body) if self.inner_responder else ("status", 500)
            return ("fault", ("slow", item)) if fault else item
        return "fault", fault

    def _answer_chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], item: tuple[str, Any]) -> None:
        kind, value = item
        if kind != "fault":
            with self._lock:
                self.answered += 1
            super()._answer_chat(handler, body, item)
            return
        name, inner = (value, None) if isinstance(value, str) else value
        with self._lock:
            self.injected[name] += 1
            if name == "slow":
                self.answered += 1
        try:
            self._fault(handler, body, name, inner)
        except OSError:
            pass  # the client gave up first (timeout): nothing to answer

    # ------------------------------------------------------------------ faults
    def _fault(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], name: str, inner: Any) -> None:
        if name == "429":
            self._send_json(handler, 429, self._error(429, "rate limit reached"), {"retry-after": self.retry_after})
        elif name in ("500", "503"):
            self._send_json(handler, int(name), self._error(int(name), "the server is overloaded"))
        elif name == "timeout":
            self._closing.wait(self.hang)
            self._drop(handler, reset=False)
        elif name == "reset":
            self._drop(handler, reset=True)
        elif name == "truncated":
            data = json.dumps(self._tool_completion(body, self._args(body))).encode()
            self._send_head(handler, 200, len(data))
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            self._drop(handler, reset=False)
        elif name == "malformed":
            data = json.dumps(self._tool_completion(body, self._args(body))).encode()
            data = data[: len(data) // 2]
            self._send_head(handler, 200, len(data))
            handler.wfile.write(data)
        elif name == "wrong_schema":
            args = self._args(body)
            if args:
                args.pop(sorted(args)[-1])
            self._send_json(handler, 200, self._tool_completion(body, args))
        elif name == "empty_choices":
            self._send_json(handler, 200, self._completion(body, []))
        elif name == "error_body":
            self._send_json(handler, 200, self._error(503, "upstream overloaded"))
        elif name == "echo_auth":
            auth = handler.headers.get("Authorization", "")
            self._send_json(handler, int(inner or 400), self._error(int(inner or 400), f"bad request from {auth}"))
        elif name == "slow":
            self._closing.wait(self.slow)
            super()._answer_chat(handler, body, inner if inner is not None else ("tool", self._args(body)))
        else:  # pragma: no cover - FaultSchedule checks names
            raise ValueError(name)

    @staticmethod
    def _error(status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error" if status != 429 else "rate_limit_exceeded",
                          "param": None, "code": str(status)}}

    @staticmethod
    def _args(body: dict[str, Any]) -> dict[str, Any]:
        """Arguments that would satisfy the requested function's required fields (strings for strings)."""
        try:
            params = body["tools"][0]["function"]["parameters"]
        except (KeyError, IndexError, TypeError):
            return {}
        out: dict[str, Any] = {}
        for key in params.get("required", []):
            spec = params.get("properties", {}).get(key, {})
            out[key] = spec["enum"][0] if spec.get("enum") else f"filler {key}"
        return out

    def _tool_completion(self, body: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        name = ((body.get("tool_choice") or {}).get("function") or {}).get("name", "unknown")
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_fault", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}
        return self._completion(body, [{"index": 0, "message": message, "logprobs": None,
                                        "finish_reason": "tool_calls"}])

    @staticmethod
    def _send_head(handler: BaseHTTPRequestHandler, status: int, length: int) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(length))
        handler.end_headers()

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler, *, reset: bool) -> None:
        """Close the connection without (finishing) an answer; `reset` sends a TCP RST instead of a FIN."""
        sock = handler.connection
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        for f in (handler.wfile, handler.rfile):
            try:
                f.close()
            except OSError:
                pass
        sock.close()
        # The handler flushes and closes its files after the method returns: give it harmless ones.
        handler.wfile, handler.rfile = io.BytesIO(), io.BytesIO()


class Teacher:
    """Answers like a capable API model: new, unique examples per request, and the first allowed planner action.

    Each answer is a function of the request's content alone (a hash of it), so a request repeated after a
    fault, or after a client timeout the server did answer, gets the same answer: a run with faults and a
    clean run write the same examples.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        self.calls += 1
        name = body["tool_choice"]["function"]["name"]
        params = body["tools"][0]["function"]["parameters"]
        if name == "choose_action":
            return "tool", {"action": params["properties"]["action"]["enum"][0], "reason": "next in order"}
        found = re.search(r'correct label is "([^"]*)"', body["messages"][-1]["content"])
        label = found.group(1) if found else "text"
        key = json.dumps([body.get("messages"), body.get("temperature"), body.get("max_tokens")], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        return "tool", {k: f"{label} note {digest} part {i}" for i, k in enumerate(params["required"], 1)}
