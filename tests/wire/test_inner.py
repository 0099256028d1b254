from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privproc.wire import hpke, ohttp
from privproc.wire.inner import (
    REQUEST_LABEL,
    RESPONSE_LABEL,
    InnerFormatError,
    InnerRequest,
    InnerResponse,
    Status,
    Task,
)

REQ = InnerRequest(Task.SUMMARIZE, bytes(range(16)),
                   {"messages": [{"sender": "A", "time": "t", "text": "héllo"}],
                    "max_bullets": 3})


def test_round_trips() -> None:
    assert InnerRequest.decode(REQ.encode()) == REQ
    resp = InnerResponse(Status.OK, {"result": ["- x"], "nonce": "00"})
    assert InnerResponse.decode(resp.encode()) == resp


def test_sealed_with_privproc_labels_to_a_node_key() -> None:
    key = ohttp.GatewayKey.create(9, hpke.KeyPair.generate())
    labels = {"request_label": REQUEST_LABEL, "response_label": RESPONSE_LABEL}
    sealed, cctx = ohttp.encapsulate_request(key.config, REQ.encode(), **labels)
    plain, sctx = ohttp.GatewayKeys([key]).decapsulate_request(sealed, **labels)
    assert InnerRequest.decode(plain) == REQ
    answer = InnerResponse(Status.OK, {"result": []}).encode()
    assert cctx.decapsulate_response(sctx.encapsulate_response(answer)) == answer
    with pytest.raises(ohttp.DecryptError):  # an OHTTP gateway cannot open it
        ohttp.GatewayKeys([key]).decapsulate_request(sealed)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x02" + bytes(21), "version"),
        (b"\x01\x09" + bytes(16) + b"\x00\x00\x00\x02{}", "unknown task"),
        (b"\x01\x01" + bytes(16) + b"\x00\x00\x00\x05{}", "length mismatch"),
        (b"\x01\x01" + bytes(16) + b"\x00\x00\x00\x02[]", "JSON object"),
        (b"\x01\x01" + bytes(16) + b"\x00\x00\x00\x02\xff\xfe", "UTF-8 JSON"),
        (b"\x01\x01" + bytes(16) + b"\xff\xff\xff\xff", "exceeds"),
    ],
)
def test_malformed_requests(data: bytes, message: str) -> None:
    with pytest.raises(InnerFormatError, match=message):
        InnerRequest.decode(data)


def test_nonce_length_checked() -> None:
    with pytest.raises(InnerFormatError, match="nonce"):
        InnerRequest(Task.WRITE, b"short", {}).encode()


@given(st.binary(max_size=100))
def test_fuzz_decoders_raise_only_format_errors(data: bytes) -> None:
    for decode in (InnerRequest.decode, InnerResponse.decode):
        with contextlib.suppress(InnerFormatError):
            decode(data)
