"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies.

Used by the agent tests, and by benchmarks that hold an LLM's decisions fixed
(``benchmarks/fail_fast.py``) so that two agents' loops can be compared on
the same decisions.

The server speaks ``POST /v1/chat/completions`` (and ``GET /v1/models``) over
real HTTP, so tests exercise the ``openai`` client, its timeouts and retries
end to end. Replies come from a queue of :class:`Scripted` items; when the
queue is empty, ``default`` (a reply, or a function of the request body) is
used. Every request body is recorded in :attr:`OpenAITestServer.requests`.

    with OpenAITestServer() as server:
        server.push(tool_call("list_sources", {}), http_error(500), text('{"tool": "submit"}'))
        client = LLMClient(base_url=server.base_url, model="test")
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Scripted:
    """One scripted reply.

    ``kind``: ``"message"`` (a chat completion with ``content``/``tool_calls``/
    ``refusal``), ``"http"`` (status ``status`` with a JSON error body),
    ``"raw"`` (status 200 with ``body`` sent verbatim). ``delay_s`` sleeps
    before answering (longer than the client's timeout = a timeout).
    """

    kind: str = "message"
    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    refusal: str | None = None
    status: int = 200
    body: str = ""
    delay_s: float = 0.0
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


def tool_call(name: str, arguments: dict[str, Any] | str, content: str | None = None, **kw: Any) -> Scripted:
    """A native function call; ``arguments`` as a string is sent verbatim (e.g. malformed JSON)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Scripted(content=content, tool_calls=[{"name": name, "arguments": args}], **kw)


def text(content: str, **kw: Any) -> Scripted:
    """A plain assistant message (JSON in text, prose, a refusal in words...)."""
    return Scripted(content=content, **kw)


def refusal(message: str = "I'm sorry, but I can't help with that.") -> Scripted:
    """A refusal in the ``refusal`` field, with no content and no tool call."""
    return Scripted(content=None, refusal=message)


def http_error(status: int = 500, message: str = "scripted server error") -> Scripted:
    return Scripted(kind="http", status=status, body=json.dumps({"error": {"message": message, "type": "server_error"}}))


def raw(body: str, status: int = 200) -> Scripted:
    """A verbatim body, e.g. not JSON at all."""
    return Scripted(kind="raw", status=status, body=body)


def slow(seconds: float, then: Scripted | None = None) -> Scripted:
    """``then`` (default: a short text) after ``seconds``: longer than the client timeout = a timeout."""
    base = then or text("slow reply")
    return Scripted(**{**base.__dict__, "delay_s": seconds})


Responder = Callable[[dict[str, Any]], Scripted]


class OpenAITestServer:
    """The server, in a daemon thread on a random port. Use as a context manager."""

    def __init__(self, default: Scripted | Responder | None = None, model: str = "scripted-test-model"):
        self.model = model
        self.default: Scripted | Responder = default or text("I have nothing to add.")
        self.requests: list[dict[str, Any]] = []
        self.replies: list[Scripted] = []
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # -- scripting
    def push(self, *replies: Scripted) -> None:
        with self._lock:
            self._queue.extend(replies)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _next(self, body: dict[str, Any]) -> Scripted:
        with self._lock:
            self.requests.append(body)
            if self._queue:
                reply = self._queue.popleft()
            else:
                reply = None
        if reply is None:
            reply = self.default(body) if callable(self.default) else self.default
        with self._lock:
            self.replies.append(reply)
        return reply

    def completion(self, reply: Scripted, body: dict[str, Any]) -> dict[str, Any]:
        """The chat-completion JSON of a scripted ``message`` reply."""
        with self._lock:
            self._counter += 1
            n = self._counter
        calls = [
            {"id": f"call_{n}_{i}", "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for i, c in enumerate(reply.tool_calls)
        ]
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            message["tool_calls"] = calls
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        prompt_chars = len(json.dumps(body.get("messages", [])))
        usage = reply.usage or {"prompt_tokens": prompt_chars // 4 + 1,
                                "completion_tokens": len(json.dumps(message)) // 4 + 1}
        usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": self.model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": reply.finish_reason or ("tool_calls" if calls else "stop")}],
            "usage": usage,
        }

    # -- lifecycle
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> OpenAITestServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: str) -> None:
                data = payload.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model, "object": "model"}]}))
                else:
                    self._send(404, json.dumps({"error": {"message": "not found"}}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length) if length else b""
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                try:
                    body = json.loads(raw_body or b"{}")
                except json.JSONDecodeError:
                    self._send(400, json.dumps({"error": {"message": "request body is not JSON"}}))
                    return
                reply = server._next(body)
                if reply.delay_s and server._closing.wait(reply.delay_s):
                    return
                if reply.kind == "http":
                    self._send(reply.status, reply.body)
                elif reply.kind == "raw":
                    self._send(reply.status, reply.body)
                else:
                    self._send(200, json.dumps(server.completion(reply, body)))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True  # a slow reply must not block shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-openai-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def last_user_text(body: dict[str, Any]) -> str:
    """The newest user or tool message of a request, for responders that react to the prompt."""
    for m in reversed(body.get("messages", [])):
        if m.get("role") in ("user", "tool") and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def system_text(body: dict[str, Any]) -> str:
    msgs = body.get("messages", [])
    return msgs[0].get("content") or "" if msgs and msgs[0].get("role") == "system" else ""
