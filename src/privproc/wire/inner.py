"""The node's inner request and response: what only the client and the attested node read.

Both travel sealed with the OHTTP construction (RFC 9458 section 4, as section 4.6
allows) under privproc's own labels, to the node's attested key configuration:

- request media type ``application/privproc-request``, HPKE info label
  ``"privproc request"``; the plaintext is :class:`InnerRequest`;
- response media type ``application/privproc-response``, exporter label
  ``"privproc response"``; the plaintext is :class:`InnerResponse`.

Plaintext encoding, version 1 (all integers big-endian)::

    InnerRequest  = version(1) = 0x01 | task(1) | nonce(16) | json_len(4) | json
    InnerResponse = version(1) = 0x01 | status(1) | json_len(4) | json

``task`` is 1 (summarize) or 2 (write); ``json`` is UTF-8 JSON: for summarize
``{"messages": [{"sender", "time", "text"}], "max_bullets": n}`` and optionally
``"reader": str``, for write ``{"draft": str, "tone": str}``, each within the limits of
:mod:`privproc.wire.limits` (which both ends check). ``nonce`` is the client's
per-request nonce, echoed in the response JSON as ``"nonce"`` (hex) so a response cannot
be swapped for another.
Response ``status`` is 0 for success (JSON ``{"result": [...], "nonce": ...}``) or an
error code (JSON ``{"error": "<content-free message>", "nonce": ...}``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from privproc import jsondoc

from .errors import WireError

REQUEST_LABEL = b"privproc request"
RESPONSE_LABEL = b"privproc response"
MEDIA_TYPE_REQUEST = "application/privproc-request"
MEDIA_TYPE_RESPONSE = "application/privproc-response"
VERSION = 1
NONCE_LEN = 16
MAX_JSON = 1 << 20


class InnerFormatError(WireError):
    """An inner request or response is malformed."""


class Task(IntEnum):
    SUMMARIZE = 1
    WRITE = 2


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    TOO_LARGE = 2
    TASK_FAILED = 3
    DEADLINE = 4
    BUSY = 5


def _json(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > MAX_JSON:
        raise InnerFormatError(f"payload is {len(data)} bytes, limit {MAX_JSON}")
    return data


def _parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InnerFormatError(f"{what} payload is not UTF-8 JSON") from None
    try:
        value = jsondoc.parse(text)
    except ValueError:
        raise InnerFormatError(f"{what} payload is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise InnerFormatError(f"{what} payload must be a JSON object")
    return value


def _split(data: bytes, header: int, what: str) -> bytes:
    if len(data) < header + 4:
        raise InnerFormatError(f"{what} too short: {len(data)} bytes")
    if data[0] != VERSION:
        raise InnerFormatError(f"unknown {what} version {data[0]}, expected {VERSION}")
    (length,) = struct.unpack_from("!I", data, header)
    if length > MAX_JSON:
        raise InnerFormatError(f"{what} payload of {length} bytes exceeds {MAX_JSON}")
    if len(data) != header + 4 + length:
        raise InnerFormatError(
            f"{what} length mismatch: header says {length} payload bytes, "
            f"{len(data) - header - 4} present"
        )
    return data[header + 4 :]


@dataclass(frozen=True)
class InnerRequest:
    task: Task
    nonce: bytes
    payload: dict[str, Any]

    def encode(self) -> bytes:
        if len(self.nonce) != NONCE_LEN:
            raise InnerFormatError(f"nonce must be {NONCE_LEN} bytes, got {len(self.nonce)}")
        body = _json(self.payload)
        return bytes([VERSION, self.task]) + self.nonce + struct.pack("!I", len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> InnerRequest:
        body = _split(data, 2 + NONCE_LEN, "inner request")
        try:
            task = Task(data[1])
        except ValueError:
            raise InnerFormatError(f"unknown task {data[1]}") from None
        return cls(task, bytes(data[2 : 2 + NONCE_LEN]), _parse_json(body, "inner request"))


@dataclass(frozen=True)
class InnerResponse:
    status: Status
    payload: dict[str, Any]

    def encode(self) -> bytes:
        body = _json(self.payload)
        return bytes([VERSION, self.status]) + struct.pack("!I", len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> InnerResponse:
        body = _split(data, 2, "inner response")
        try:
            status = Status(data[1])
        except ValueError:
            raise InnerFormatError(f"unknown status {data[1]}") from None
        return cls(status, _parse_json(body, "inner response"))
