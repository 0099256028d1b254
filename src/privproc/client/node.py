"""Sealing a task to an attested node and opening its answer (sans-IO)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from privproc.wire import hpke, inner, ohttp
from privproc.wire.errors import OHTTPError

from .errors import ClientError


class NodeResponseError(ClientError):
    """The node's answer does not open, is malformed, or is not for this request."""


class TaskFailedError(ClientError):
    """The node answered with an error status (its message carries no request data)."""

    def __init__(self, status: inner.Status, message: str) -> None:
        what = ("the node stopped the task at its deadline" if status is inner.Status.DEADLINE
                else f"node refused the task: {status.name}: {message}")
        super().__init__(what)
        self.status = status


def seal_task(key_config: ohttp.KeyConfig, task: inner.Task, payload: dict[str, Any],
              rand: hpke.Rand = os.urandom
              ) -> tuple[bytes, bytes, ohttp.ClientResponseContext]:
    """Returns (sealed request, nonce, context to open the answer)."""
    nonce = rand(inner.NONCE_LEN)
    plain = inner.InnerRequest(task, nonce, payload).encode()
    sealed, ctx = ohttp.encapsulate_request(
        key_config, plain, request_label=inner.REQUEST_LABEL,
        response_label=inner.RESPONSE_LABEL, rand=rand)
    return sealed, nonce, ctx


@dataclass(frozen=True)
class NodeOutput:
    """What the node answered: the result, and for summaries each bullet's source message
    indices, for rewrites the flags ("fallback": the node kept the draft's words)."""

    result: list[str]
    sources: list[list[int]] | None = None
    flags: tuple[str, ...] = ()


def open_task(ctx: ohttp.ClientResponseContext, nonce: bytes, body: bytes) -> list[str]:
    """The node's result (see :func:`open_output` for sources and flags)."""
    return open_output(ctx, nonce, body).result


def open_output(ctx: ohttp.ClientResponseContext, nonce: bytes, body: bytes) -> NodeOutput:
    try:
        response = inner.InnerResponse.decode(ctx.decapsulate_response(body))
    except OHTTPError as exc:
        raise NodeResponseError(f"node response does not open: {exc}") from None
    except inner.InnerFormatError as exc:
        raise NodeResponseError(f"node response malformed: {exc}") from None
    if response.payload.get("nonce") != nonce.hex():
        raise NodeResponseError("node response is for another request (nonce mismatch)")
    if response.status is not inner.Status.OK:
        raise TaskFailedError(response.status, str(response.payload.get("error", "")))
    result = response.payload.get("result")
    if not isinstance(result, list) or not all(isinstance(r, str) for r in result):
        raise NodeResponseError("node result must be a list of strings")
    sources = response.payload.get("sources")
    if sources is not None and not (
            isinstance(sources, list) and len(sources) == len(result)
            and all(isinstance(s, list) and all(isinstance(i, int) for i in s)
                    for s in sources)):
        raise NodeResponseError("node sources must be one list of indices per bullet")
    flags = response.payload.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise NodeResponseError("node flags must be a list of strings")
    return NodeOutput(result, sources, tuple(flags))
