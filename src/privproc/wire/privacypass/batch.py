"""Batched issuance (a privproc extension to RFC 9578): many TokenRequests in one exchange.

A batch is a sequence of items, each a 2-byte big-endian length followed by that many
bytes: RFC 9578 ``TokenRequest`` structures in the request
(``application/privproc-token-request-batch``), the ``TokenResponse`` for each, in the
same order, in the answer (``application/privproc-token-response-batch``). A batch holds
1 to :data:`MAX_BATCH` items. The issuer advertises the endpoint with two extra members
of its directory, :data:`DIRECTORY_BATCH_URI` and :data:`DIRECTORY_BATCH_MAX`; a client
that finds neither sends single requests. See docs/formats.md.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

from privproc import jsondoc

from .common import PrivacyPassError

MEDIA_TYPE_BATCH_REQUEST = "application/privproc-token-request-batch"
MEDIA_TYPE_BATCH_RESPONSE = "application/privproc-token-response-batch"
DIRECTORY_BATCH_URI = "privproc-batch-request-uri"
DIRECTORY_BATCH_MAX = "privproc-batch-max"
MAX_BATCH = 100
MAX_ITEM = 1024  # the largest TokenRequest or TokenResponse of a supported type is < 300


def encode_batch(items: Sequence[bytes]) -> bytes:
    """The length-prefixed sequence of ``items`` (1 to :data:`MAX_BATCH`)."""
    if not 1 <= len(items) <= MAX_BATCH:
        raise PrivacyPassError(f"a batch holds 1 to {MAX_BATCH} items, got {len(items)}")
    out = bytearray()
    for item in items:
        if len(item) > MAX_ITEM:
            raise PrivacyPassError(f"batch item longer than {MAX_ITEM} bytes")
        out += struct.pack("!H", len(item)) + item
    return bytes(out)


def decode_batch(data: bytes, max_items: int = MAX_BATCH) -> list[bytes]:
    """The items of a batch; raises :class:`PrivacyPassError` for a malformed one or one
    of more than ``max_items`` items."""
    items: list[bytes] = []
    at = 0
    while at < len(data):
        if len(items) == max_items:
            raise PrivacyPassError(f"a batch holds at most {max_items} items")
        if at + 2 > len(data):
            raise PrivacyPassError("batch item length cut short")
        (length,) = struct.unpack_from("!H", data, at)
        at += 2
        if length == 0 or length > MAX_ITEM or at + length > len(data):
            raise PrivacyPassError("batch item length out of range")
        items.append(bytes(data[at:at + length]))
        at += length
    if not items:
        raise PrivacyPassError("empty batch")
    return items


def max_batch_size(limit: int) -> int:
    """A batch size the wire allows (1 to :data:`MAX_BATCH`) for an advertised ``limit``."""
    return max(1, min(MAX_BATCH, limit))


def batch_offer(directory: bytes) -> tuple[str, int] | None:
    """The batch endpoint a directory advertises (its URI and largest batch), or None.

    Reads only the two extension members; the RFC 9578 members are parsed by
    :class:`~privproc.wire.privacypass.IssuerDirectory`. Anything malformed reads as no
    offer: the client falls back to single requests."""
    try:
        doc = jsondoc.parse(directory)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    uri = doc.get(DIRECTORY_BATCH_URI)
    limit = doc.get(DIRECTORY_BATCH_MAX, MAX_BATCH)
    if not isinstance(uri, str) or not uri or isinstance(limit, bool) or not isinstance(
            limit, int) or limit < 1:
        return None
    return uri, max_batch_size(limit)


def with_batch_offer(directory: bytes, uri: str, limit: int = MAX_BATCH) -> bytes:
    """``directory`` (an encoded issuer directory) with the batch endpoint advertised."""
    doc = json.loads(directory)
    doc[DIRECTORY_BATCH_URI] = uri
    doc[DIRECTORY_BATCH_MAX] = max_batch_size(limit)
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
