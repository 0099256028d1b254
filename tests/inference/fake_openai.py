"""A small OpenAI-compatible chat-completions server on loopback, for tests.

The ``model`` field picks a behaviour:

- ``echo`` (default): replies ``You said: <last user message>``; a system prompt
  asking for bullet points gets the transcript's first lines as ``- `` bullets instead.
  ``max_tokens`` counts words; ``stop`` is honoured.
- ``status-NNN``: HTTP NNN with a body that echoes the request (to prove errors do not).
- ``garbage``: HTTP 200 with a non-JSON body echoing the request.
- ``slow``: answers only once the server closes (or after 10 s): a client times out.
- ``no-stream``: answers plain JSON even when asked to stream.
- ``no-done``: streams without the final ``[DONE]``.
- ``stream-error``: streams one delta, then an error event echoing the request.
- ``stream-bad``: streams a data line that is not JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    user = [m["content"] for m in messages if m["role"] == "user"]
    last = user[-1] if user else ""
    if "bullet points" in system:
        text = "Here is the summary:\n" + "\n".join(f"- {line}" for line in last.splitlines()[:8])
    else:
        text = f"You said: {last}"
    words = text.split(" ")
    text = " ".join(words[: int(body.get("max_tokens") or 256)])
    for stop in body.get("stop") or []:
        if stop in text:
            text = text[: text.index(stop)]
    return text


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/chat/completions":
            self._send(404, b'{"error": "not found"}')
            return
        body = json.loads(raw)
        self.server.requests.append((dict(self.headers.items()), body))
        model = str(body.get("model", "echo"))
        echo = raw.decode()
        if model.startswith("status-"):
            self._send(int(model.removeprefix("status-")), json.dumps({"error": echo}).encode())
            return
        if model == "garbage":
            self._send(200, b"<html>" + raw + b"</html>", "text/html")
            return
        if model == "slow":
            self.server.closing.wait(10)
        text = reply_text(body)
        if not body.get("stream") or model == "no-stream":
            payload = {
                "id": "cmpl-1",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            }
            self._send(200, json.dumps(payload).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def event(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        self.wfile.write(b": keep-alive comment\n\n")
        event({"role": "assistant"})
        if model == "stream-error":
            event({"content": text[:5]})
            self.wfile.write(f"data: {json.dumps({'error': {'message': echo}})}\n\n".encode())
            return
        if model == "stream-bad":
            self.wfile.write(b"data: {not json " + raw[:50] + b"\n\n")
            return
        for i in range(0, len(text), 3):
            event({"content": text[i : i + 3]})
        event({}, "stop")
        if model != "no-done":
            self.wfile.write(b"data: [DONE]\n\n")


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.closing = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def running_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
