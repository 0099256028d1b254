"""The plain-ASGI POST route of the relay and the gateway: bounded bodies, a client gone
mid-body gets nothing, every other request reaches the app unchanged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from privproc.fastpath import Answer, PostRoute, problem_answer

TOO_LARGE = problem_answer(413, "too large")


class App:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(route: PostRoute, scope: dict[str, Any], messages: list[dict[str, Any]]
         ) -> tuple[list[dict[str, Any]], int]:
    """Run one request; returns what was sent and how many messages were read."""
    sent: list[dict[str, Any]] = []
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(route(scope, receive, send))
    return sent, len(messages) - len(pending)


def post(path: str = "/", headers: list[tuple[bytes, bytes]] | None = None
         ) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or []}


def route_with(app: App, seen: list[tuple[str, bytes]], max_body: int = 10) -> PostRoute:
    async def handler(content_type: str, body: bytes) -> Answer:
        seen.append((content_type, body))
        return Answer(200, body.upper(), "text/x", ((b"x-extra", b"1"),))

    return PostRoute(app, "/", handler, max_body=max_body, too_large=TOO_LARGE)


def test_the_body_in_chunks_reaches_the_handler_and_its_answer_goes_out() -> None:
    seen: list[tuple[str, bytes]] = []
    sent, _ = call(route_with(App(), seen), post(headers=[(b"content-type", b"a/b")]), [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False}])
    assert seen == [("a/b", b"abcdef")]
    assert sent[0] == {"type": "http.response.start", "status": 200, "headers": [
        (b"content-length", b"6"), (b"content-type", b"text/x"), (b"x-extra", b"1")]}
    assert sent[1] == {"type": "http.response.body", "body": b"ABCDEF"}


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    seen: list[tuple[str, bytes]] = []
    sent, read = call(route_with(App(), seen), post(headers=[(b"content-length", b"11")]),
                      [{"type": "http.request", "body": b"x" * 11}])
    assert read == 0 and seen == []
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["title"] == "too large"


def test_a_body_growing_over_the_cap_is_refused_without_reading_the_rest() -> None:
    seen: list[tuple[str, bytes]] = []
    sent, read = call(route_with(App(), seen), post(), [
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.request", "body": b"x" * 6, "more_body": False}])
    assert read == 2 and seen == [] and sent[0]["status"] == 413


def test_a_client_gone_mid_body_gets_no_answer() -> None:
    seen: list[tuple[str, bytes]] = []
    sent, _ = call(route_with(App(), seen), post(), [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"}])
    assert sent == [] and seen == []


def test_other_paths_methods_and_scopes_reach_the_app() -> None:
    app = App()
    seen: list[tuple[str, bytes]] = []
    route = route_with(app, seen)
    for scope in (post("/other"), {**post(), "method": "GET"},
                  {"type": "lifespan"}):
        call(route, scope, [])
    assert [s.get("path") for s in app.scopes] == ["/other", "/", None] and seen == []
