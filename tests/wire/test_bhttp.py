"""Tests for the RFC 9292 Binary HTTP codec and the RFC 9000 varints it uses."""

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproc.wire.bhttp import (
    Field,
    InformationalResponse,
    Limits,
    Request,
    Response,
    decode_message,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from privproc.wire.errors import BinaryHttpError
from privproc.wire.varint import decode_varint, encode_varint

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "bhttp"

KNOWN_REQUEST = "s5.1-request-known-length.bin"
INDETERMINATE_REQUEST = "s5.1-request-indeterminate-length-10B-padding.bin"
INDETERMINATE_RESPONSE = "s5.2-response-indeterminate-length-102-103-200.bin"
KNOWN_RESPONSE = "s5.2-response-known-length-from-chunked.bin"
ALL_VECTORS = (KNOWN_REQUEST, INDETERMINATE_REQUEST, INDETERMINATE_RESPONSE, KNOWN_RESPONSE)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def rfc9458() -> dict[str, str]:
    data: dict[str, str] = json.loads((VECTORS / "rfc9458-appendixA.json").read_text())
    return data


# --- a minimal HTTP/1.1 reader for the RFC's .http example files ---------------------


def _fields(lines: list[bytes]) -> tuple[Field, ...]:
    out = []
    for line in lines:
        name, _, value = line.partition(b":")
        out.append(Field(name.lower(), value.strip(b" \t")))
    return tuple(out)


def _read_head(data: bytes, pos: int) -> tuple[bytes, list[bytes], int]:
    end = data.index(b"\r\n\r\n", pos)
    start_line, *lines = data[pos:end].split(b"\r\n")
    return start_line, lines, end + 4


def _dechunk(data: bytes, pos: int) -> tuple[bytes, tuple[Field, ...]]:
    content = b""
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            break
        content += data[pos : pos + size]
        pos += size + 2
    trailer_lines = data[pos:].split(b"\r\n\r\n")[0]
    return content, _fields(trailer_lines.split(b"\r\n") if trailer_lines else [])


def parse_http1_request(data: bytes) -> tuple[bytes, bytes, tuple[Field, ...]]:
    start_line, lines, _ = _read_head(data, 0)
    method, target, _version = start_line.split(b" ")
    return method, target, _fields(lines)


def parse_http1_responses(data: bytes) -> Response:
    """Parse 1xx responses then a final one (Content-Length or chunked content)."""
    informational = []
    pos = 0
    while True:
        start_line, lines, pos = _read_head(data, pos)
        status = int(start_line.split(b" ")[1])
        headers = _fields(lines)
        if status < 200:
            informational.append(InformationalResponse(status, headers))
            continue
        names = {f.name: f.value for f in headers}
        if names.get(b"transfer-encoding") == b"chunked":
            content, trailers = _dechunk(data, pos)
            # RFC 9292 s5.2: the transfer-encoding field is removed in binary form.
            headers = tuple(f for f in headers if f.name != b"transfer-encoding")
            return Response(status, headers, content, trailers, tuple(informational))
        content = data[pos : pos + int(names[b"content-length"])]
        return Response(status, headers, content, (), tuple(informational))


# --- RFC 9292 section 5 examples ------------------------------------------------------


def test_vector_sizes() -> None:
    sizes = {name: len(vector(name)) for name in ALL_VECTORS}
    assert sizes == {
        KNOWN_REQUEST: 135,
        INDETERMINATE_REQUEST: 144,
        INDETERMINATE_RESPONSE: 368,
        KNOWN_RESPONSE: 48,
    }


@pytest.mark.parametrize("name", [KNOWN_REQUEST, INDETERMINATE_REQUEST])
def test_request_examples_decode_to_http_file(name: str) -> None:
    method, target, headers = parse_http1_request(vector("s5.1-request.http"))
    req = decode_request(vector(name))
    assert req == Request(method, b"https", b"", target, headers)
    assert req.method == b"GET"
    assert req.path == b"/hello.txt"
    assert [f.name for f in req.headers] == [b"user-agent", b"host", b"accept-language"]
    assert decode_message(vector(name)) == req


def test_interim_response_example_decodes_to_http_file() -> None:
    expected = parse_http1_responses(vector("s5.2-response-interim.http"))
    resp = decode_response(vector(INDETERMINATE_RESPONSE))
    assert resp == expected
    assert [i.status for i in resp.informational] == [102, 103]
    assert resp.informational[1].headers[1] == Field(
        b"link", b"</script.js>; rel=preload; as=script"
    )
    assert resp.status == 200
    assert len(resp.content) == 51
    assert resp.content.endswith(b"CRLF.\r\n")
    assert resp.trailers == ()


def test_chunked_response_example_decodes_to_http_file() -> None:
    expected = parse_http1_responses(vector("s5.2-response-chunked.http"))
    resp = decode_response(vector(KNOWN_RESPONSE))
    assert resp == expected
    assert resp == Response(
        200, (), b"This content contains CRLF.\r\n", (Field(b"trailer", b"text"),)
    )


@pytest.mark.parametrize(
    ("name", "indeterminate", "padding"),
    [
        (KNOWN_REQUEST, False, 0),
        (INDETERMINATE_REQUEST, True, 10),
        (INDETERMINATE_RESPONSE, True, 0),
        (KNOWN_RESPONSE, False, 0),
    ],
)
def test_examples_reencode_byte_exact(name: str, indeterminate: bool, padding: int) -> None:
    data = vector(name)
    msg = decode_message(data)
    if isinstance(msg, Request):
        again = encode_request(msg, indeterminate=indeterminate, padding=padding)
    else:
        again = encode_response(msg, indeterminate=indeterminate, padding=padding)
    assert again == data


def test_same_request_in_both_framings() -> None:
    known = decode_request(vector(KNOWN_REQUEST))
    assert decode_request(vector(INDETERMINATE_REQUEST)) == known
    assert encode_request(known, indeterminate=True, padding=10) == vector(INDETERMINATE_REQUEST)


@pytest.mark.parametrize(
    ("name", "valid_lengths"),
    [
        # control data ends at 23, headers at 133, content at 134, trailers at 135.
        (KNOWN_REQUEST, [23, 133, 134, 135]),
        # the same, then 10 bytes of zero padding: the RFC's "up to 12 bytes" removable.
        (INDETERMINATE_REQUEST, [23, *range(132, 145)]),
        # final status ends at 111; header terminator 314; content terminator 367.
        (INDETERMINATE_RESPONSE, [111, 314, 367, 368]),
        (KNOWN_RESPONSE, [3, 4, 34, 48]),
    ],
)
def test_truncation_only_at_permitted_points(name: str, valid_lengths: list[int]) -> None:
    data = vector(name)
    decoded = {}
    for n in range(len(data) + 1):
        with contextlib.suppress(BinaryHttpError):
            decoded[n] = decode_message(data[:n])
    assert sorted(decoded) == valid_lengths
    # Whatever was cut off reads as empty (RFC 9292 s3.8); the RFC's parts here are
    # nothing after control data, headers only, headers and content, then all three.
    full = decode_message(data)
    assert decoded[valid_lengths[0]] == replace(full, headers=(), content=b"", trailers=())
    assert decoded[valid_lengths[1]] == replace(full, content=b"", trailers=())
    assert decoded[valid_lengths[2]] == replace(full, trailers=())
    assert all(decoded[n] == full for n in valid_lengths[3:])


def test_rfc9292_request_truncated_by_two_bytes() -> None:
    # s5.1: "the last two bytes ... can each be removed without altering the semantics".
    data = vector(KNOWN_REQUEST)
    full = decode_request(data)
    assert decode_request(data[:-1]) == full
    assert decode_request(data[:-2]) == full
    assert encode_request(full, truncate=True) == data[:-2]


# --- RFC 9458 appendix A --------------------------------------------------------------


def test_rfc9458_request() -> None:
    data = bytes.fromhex(rfc9458()["request_bhttp"])
    req = decode_request(data)
    assert req == Request(b"GET", b"https", b"example.com", b"/")
    assert encode_request(req, truncate=True) == data
    full = encode_request(req)
    assert full == data + b"\x00\x00\x00"
    assert decode_request(full) == req
    assert encode_request(req, indeterminate=True, truncate=True) == b"\x02" + data[1:]


def test_rfc9458_response() -> None:
    data = bytes.fromhex(rfc9458()["response_bhttp"])
    resp = decode_response(data)
    assert resp == Response(200)
    assert encode_response(resp, truncate=True) == data
    assert encode_response(resp) == data + b"\x00\x00\x00"
    assert encode_response(resp, indeterminate=True) == b"\x03\x40\xc8\x00\x00\x00"


def test_truncate_keeps_nonempty_later_parts() -> None:
    req = Request(b"GET", b"https", b"a", b"/", trailers=(Field(b"x", b"y"),))
    assert encode_request(req, truncate=True) == encode_request(req)
    req = Request(b"POST", b"https", b"a", b"/", content=b"hi")
    assert encode_request(req, truncate=True) == encode_request(req)[:-1]
    assert decode_request(encode_request(req, truncate=True)) == req


def test_padding_after_truncation_reads_as_empty_parts() -> None:
    data = bytes.fromhex(rfc9458()["request_bhttp"])
    req = decode_request(data)
    for pad in range(8):
        assert decode_request(data + bytes(pad)) == req
        assert encode_request(req, truncate=True, padding=pad) == data + bytes(pad)


def test_accepts_bytearray_and_memoryview() -> None:
    data = vector(KNOWN_RESPONSE)
    assert decode_response(bytearray(data)) == decode_response(memoryview(data))


def test_non_minimal_varints_are_accepted() -> None:
    # framing 0 as 2 bytes, method length 3 as 4 bytes, status 200 as 8 bytes.
    req = decode_request(
        bytes.fromhex("400080000003") + b"GET" + bytes.fromhex("05") + b"https" + b"\x00\x01/"
    )
    assert req == Request(b"GET", b"https", b"", b"/")
    assert decode_response(bytes.fromhex("01c0000000000000c8")) == Response(200)


def test_dataclasses_coerce_lists_to_tuples() -> None:
    req = Request(b"GET", b"https", b"", b"/", [Field(b"a", b"b")])  # type: ignore[arg-type]
    assert req.headers == (Field(b"a", b"b"),)
    assert hash(req) == hash(Request(b"GET", b"https", b"", b"/", (Field(b"a", b"b"),)))


# --- hypothesis strategies -------------------------------------------------------------

LOWER_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
TCHAR = LOWER_TCHAR + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {b":method", b":scheme", b":authority", b":path", b":status"}
CTL_SP_DEL = bytes(range(0x21)) + b"\x7f"

names = st.text(LOWER_TCHAR, min_size=1, max_size=16).map(str.encode)
values = st.binary(max_size=40).map(lambda v: v.translate(None, b"\x00\r\n").strip(b" \t"))
regular_fields = st.lists(st.builds(Field, names, values), max_size=6)
pseudo_fields = st.lists(
    st.builds(Field, names.map(lambda n: b":" + n).filter(lambda n: n not in RESERVED), values),
    max_size=2,
)
header_sections = st.builds(lambda p, r: (*p, *r), pseudo_fields, regular_fields)
trailer_sections = regular_fields.map(tuple)
contents = st.one_of(
    st.binary(max_size=100),
    st.builds(lambda n, b: b * n, st.integers(60, 17000), st.binary(min_size=1, max_size=1)),
)
uri_parts = st.binary(max_size=30).map(lambda b: b.translate(None, CTL_SP_DEL))

requests = st.builds(
    Request,
    method=st.text(TCHAR, min_size=1, max_size=10).map(str.encode),
    scheme=st.sampled_from([b"https", b"http", b""]) | uri_parts,
    authority=uri_parts,
    path=uri_parts,
    headers=header_sections,
    content=contents,
    trailers=trailer_sections,
)
informationals = st.builds(InformationalResponse, st.integers(100, 199), header_sections)
responses = st.builds(
    Response,
    status=st.integers(200, 599),
    headers=header_sections,
    content=contents,
    trailers=trailer_sections,
    informational=st.lists(informationals, max_size=3).map(tuple),
)
# Every encoding option: (indeterminate, padding, truncate).
options = st.tuples(st.booleans(), st.integers(0, 70), st.booleans())


@settings(deadline=None)
@given(requests, options)
def test_request_round_trip(req: Request, opts: tuple[bool, int, bool]) -> None:
    indeterminate, padding, truncate = opts
    data = encode_request(req, indeterminate=indeterminate, padding=padding, truncate=truncate)
    assert data[0] == (2 if indeterminate else 0)
    assert decode_request(data) == req
    assert decode_message(data) == req
    _check_truncation_is_a_prefix(encode_request, req, indeterminate)


@settings(deadline=None)
@given(responses, options)
def test_response_round_trip(resp: Response, opts: tuple[bool, int, bool]) -> None:
    indeterminate, padding, truncate = opts
    data = encode_response(resp, indeterminate=indeterminate, padding=padding, truncate=truncate)
    assert data[0] == (3 if indeterminate else 1)
    assert decode_response(data) == resp
    assert decode_message(data) == resp
    _check_truncation_is_a_prefix(encode_response, resp, indeterminate)


def _check_truncation_is_a_prefix(
    encode: Callable[..., bytes], msg: Request | Response, indeterminate: bool
) -> None:
    full = encode(msg, indeterminate=indeterminate)
    short = encode(msg, indeterminate=indeterminate, truncate=True)
    # What truncation drops reads back as empty parts, i.e. it is all zero bytes.
    assert full.startswith(short)
    assert full[len(short) :].count(0) == len(full) - len(short) <= 3


@settings(deadline=None)
@given(requests)
def test_known_length_request_exact_layout(req: Request) -> None:
    data = encode_request(req)
    expected = b"\x00"
    for part in (req.method, req.scheme, req.authority, req.path):
        expected += encode_varint(len(part)) + part
    for section in (req.headers, None, req.trailers):
        body = (
            req.content
            if section is None
            else b"".join(
                encode_varint(len(f.name)) + f.name + encode_varint(len(f.value)) + f.value
                for f in section
            )
        )
        expected += encode_varint(len(body)) + body
    assert data == expected


# --- fuzzing: decoders raise BinaryHttpError and nothing else -------------------------

SMALL_LIMITS = Limits(
    max_field_section_size=64, max_content_size=64, max_fields=3, max_informational=1
)


def _decode_all(data: bytes) -> None:
    for limits in (Limits(), SMALL_LIMITS):
        for decode in (decode_request, decode_response, decode_message):
            try:
                msg = decode(data, limits)
            except BinaryHttpError as exc:
                assert str(exc)
                continue
            # Anything that decodes re-encodes to something that decodes the same.
            if isinstance(msg, Request):
                assert decode_request(encode_request(msg), limits) == msg
            else:
                assert decode_response(encode_response(msg), limits) == msg


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_all(data)


@FUZZ
@given(st.integers(0, 3), st.binary(max_size=200))
def test_fuzz_random_bytes_after_valid_framing(framing: int, data: bytes) -> None:
    _decode_all(bytes((framing,)) + data)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
        st.integers(0, 400),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(st.sampled_from(ALL_VECTORS), mutations)
def test_fuzz_mutated_vectors(name: str, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(vector(name))
    for kind, pos, byte in edits:
        i = pos % (len(data) + 1)
        if kind == "insert":
            data[i:i] = bytes((byte,))
        elif kind == "cut":
            del data[i:]
        elif i < len(data):
            if kind == "flip":
                data[i] ^= 1 << (byte % 8)
            elif kind == "set":
                data[i] = byte
            else:
                del data[i]
    _decode_all(bytes(data))


@FUZZ
@given(st.sampled_from(ALL_VECTORS), st.data())
def test_fuzz_truncated_vectors(name: str, data: st.DataObject) -> None:
    whole = vector(name)
    n = data.draw(st.integers(0, len(whole)))
    _decode_all(whole[:n])


# --- explicit error cases ---------------------------------------------------------------

REQ_HEAD = bytes.fromhex("00034745540568747470730b6578616d706c652e636f6d012f")  # RFC 9458
IREQ_HEAD = b"\x02" + REQ_HEAD[1:]


def _lp(b: bytes) -> bytes:
    return encode_varint(len(b)) + b


def _line(name: bytes, value: bytes) -> bytes:
    return _lp(name) + _lp(value)


def _known_headers(*lines: bytes) -> bytes:
    return _lp(b"".join(lines))


DECODE_ERRORS = [
    # decoder, input, regex the message must match
    pytest.param(
        decode_message,
        b"",
        r"expected framing indicator at offset 0",
        id="empty",
    ),
    pytest.param(
        decode_message,
        b"\x04",
        r"unknown framing indicator 4 at offset 0",
        id="unknown framing",
    ),
    pytest.param(
        decode_message,
        b"\x40\x3f",
        r"unknown framing indicator 63",
        id="unknown framing 2-byte",
    ),
    pytest.param(
        decode_message,
        b"\x40",
        r"varint needs 2 bytes, 1 left",
        id="truncated framing varint",
    ),
    pytest.param(
        decode_request,
        b"\x01\x40\xc8",
        r"expected a request .* got 1",
        id="response as request",
    ),
    pytest.param(
        decode_response,
        REQ_HEAD,
        r"expected a response .* got 0",
        id="request as response",
    ),
    pytest.param(
        decode_request,
        b"\x00\x03GET",
        r"expected scheme length at offset 5",
        id="truncated control data",
    ),
    pytest.param(
        decode_request,
        b"\x00\x05GET",
        r"truncated method at offset 2: length says 5 bytes, 3 left",
        id="method overruns",
    ),
    pytest.param(
        decode_request,
        b"\x00\x03GET\x00\x00\x80\x00",
        r"truncated path length at offset 7",
        id="truncated path varint",
    ),
    pytest.param(
        decode_request,
        b"\x00\x00\x00\x00\x01/",
        r"method is empty",
        id="empty method",
    ),
    pytest.param(
        decode_request,
        b"\x00\x04GE T\x00\x00\x01/",
        r"byte 0x20 at index 2, not a token",
        id="method not a token",
    ),
    pytest.param(
        decode_request,
        b"\x00\x03GET\x00\x00\x02/ ",
        r"path b'/ ' has byte 0x20 at index 1",
        id="path with space",
    ),
    pytest.param(
        decode_request,
        b"\x00\x03GET\x00\x00\x02/\n",
        r"path .* byte 0x0a",
        id="path with newline",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x0a\x01a",
        r"truncated header section at offset 26: length says 10 bytes, 2 left",
        id="header section overruns",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x02\x05a\x00",
        r"truncated field name at offset 27: length says 5 bytes, "
        r"1 left in header section \(offsets 26..28\)",
        id="field overruns section",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x02\x01a",
        r"expected field value length at offset 28, got end of header section",
        id="value length missing in section",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x02\x00\x00",
        r"zero-length field name at offset 26",
        id="zero-length name",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x00\x05abc",
        r"truncated content at offset 27: length says 5 bytes, 3 left",
        id="truncated content",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x00\x00\x04\x01a",
        r"truncated trailer section",
        id="truncated trailers",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x00\x00\x00\x00\x00\x07",
        r"trailing bytes: non-zero byte 0x07 at offset 30 after the message ended at offset 28",
        id="trailing bytes",
    ),
    pytest.param(
        decode_request,
        IREQ_HEAD + b"\x00\x00\x00\x01",
        r"trailing bytes: non-zero byte 0x01 at offset 28",
        id="trailing bytes after indeterminate",
    ),
    pytest.param(
        decode_request,
        IREQ_HEAD + _line(b"a", b"b"),
        r"expected field name length or header section terminator at offset 29",
        id="indeterminate headers unterminated",
    ),
    pytest.param(
        decode_request,
        IREQ_HEAD + b"\x09ab",
        r"truncated field name at offset 26: length says 9 bytes, 2 left in message",
        id="indeterminate name overruns",
    ),
    pytest.param(
        decode_request,
        IREQ_HEAD + b"\x00\x02hi",
        r"expected content chunk length or content terminator at offset 29",
        id="indeterminate content unterminated",
    ),
    pytest.param(
        decode_request,
        IREQ_HEAD + b"\x00\x05hi",
        r"truncated content chunk at offset 27: length says 5 bytes, 2 left",
        id="indeterminate chunk overruns",
    ),
    pytest.param(
        decode_request,
        IREQ_HEAD + b"\x00\x00" + _line(b"a", b"b"),
        r"trailer section terminator at offset 31",
        id="indeterminate trailers unterminated",
    ),
    pytest.param(
        decode_response,
        b"\x01\x40\x63",
        r"invalid status code 99 at offset 1: "
        r"expected 100..199 \(informational\) or 200..599 \(final\)",
        id="status 99",
    ),
    pytest.param(
        decode_response,
        b"\x01\x42\x58",
        r"invalid status code 600 at offset 1",
        id="status 600",
    ),
    pytest.param(
        decode_response,
        b"\x01\x00",
        r"invalid status code 0",
        id="status 0",
    ),
    pytest.param(
        decode_response,
        b"\x01",
        r"expected status code at offset 1",
        id="no status",
    ),
    pytest.param(
        decode_response,
        b"\x01\x40\x64",
        r"expected informational response 100 header section length at offset 3",
        id="informational then end",
    ),
    pytest.param(
        decode_response,
        b"\x01\x40\x64\x00",
        r"expected status code at offset 4",
        id="informational without final",
    ),
    pytest.param(
        decode_response,
        b"\x03\x40\x67" + _line(b"link", b"x"),
        r"or informational response 103 header section terminator at offset 10",
        id="indeterminate informational unterminated",
    ),
    pytest.param(
        decode_response,
        b"\x01\x40\xc8\x00\x00\x00\x40\x64",
        r"trailing bytes: non-zero byte 0x40 at offset 6",
        id="informational 1xx after final",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"Host", b"x")),
        r"invalid field b'Host' at offset 26 in header section: uppercase byte 'H' at index 0",
        id="uppercase name",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x00\x00" + _known_headers(_line(b"eTag", b"x")),
        r"in trailer section: uppercase byte 'T' at index 1",
        id="uppercase name in trailers",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a b", b"x")),
        r"byte 0x20 at index 1 is not allowed in a field name",
        id="space in name",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a:b", b"x")),
        r"byte 0x3a at index 1",
        id="colon in name",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b":", b"x")),
        r"nothing after ':'",
        id="bare colon",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b":path", b"/")),
        r"invalid field b':path' .* carried in control data",
        id="reserved pseudo",
    ),
    pytest.param(
        decode_response,
        b"\x01\x40\xc8" + _known_headers(_line(b":status", b"200")),
        r"b':status'",
        id="status pseudo in response",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a", b"b"), _line(b":protocol", b"x")),
        r"pseudo-field follows a regular field",
        id="pseudo after regular",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + b"\x00\x00" + _known_headers(_line(b":protocol", b"x")),
        r"pseudo-fields are not allowed in trailers",
        id="pseudo in trailers",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a", b"x\ry")),
        r"value contains byte 0x0d at index 1",
        id="value with CR",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a", b"\n")),
        r"value contains byte 0x0a at index 0",
        id="value with LF",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a", b"x\x00")),
        r"value contains byte 0x00",
        id="value with NUL",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a", b" x")),
        r"starts or ends with whitespace",
        id="value leading space",
    ),
    pytest.param(
        decode_request,
        REQ_HEAD + _known_headers(_line(b"a", b"x\t")),
        r"starts or ends with whitespace",
        id="value trailing tab",
    ),
]


@pytest.mark.parametrize(("decode", "data", "pattern"), DECODE_ERRORS)
def test_decode_errors(decode: Callable[[bytes], object], data: bytes, pattern: str) -> None:
    with pytest.raises(BinaryHttpError, match=pattern):
        decode(data)


LIMIT_ERRORS = [
    pytest.param(
        Limits(max_field_section_size=4),
        REQ_HEAD + _known_headers(_line(b"ab", b"cd")),
        r"header section at offset 25 is 6 bytes, over the limit max_field_section_size=4",
        id="known field section",
    ),
    pytest.param(
        Limits(max_field_section_size=4),
        IREQ_HEAD + b"\x05abcde\x00\x00",
        r"header section starting at offset 25 grows past the limit "
        r"max_field_section_size=4: field name of 5 bytes at offset 25",
        id="indeterminate field section name",
    ),
    pytest.param(
        Limits(max_field_section_size=4),
        IREQ_HEAD + _line(b"a", b"bcd") + b"\x00",
        r"field value of 3 bytes at offset 27",
        id="indeterminate field section value",
    ),
    pytest.param(
        Limits(),
        IREQ_HEAD + b"\xbf\xff\xff\xff",
        r"grows past the limit max_field_section_size=65536: field name of 1073741823 bytes",
        id="indeterminate huge declared name",
    ),
    pytest.param(
        Limits(max_content_size=2),
        REQ_HEAD + b"\x00\x03abc",
        r"content at offset 26 is 3 bytes, over the limit max_content_size=2",
        id="known content",
    ),
    pytest.param(
        Limits(),
        REQ_HEAD + b"\x00" + b"\xff" * 8,
        r"is 4611686018427387903 bytes, over the limit max_content_size=16777216",
        id="known huge content",
    ),
    pytest.param(
        Limits(max_content_size=3),
        IREQ_HEAD + b"\x00\x02ab\x02cd\x00",
        r"content chunk of 2 bytes at offset 29 brings the content to 4 bytes, "
        r"over the limit max_content_size=3",
        id="indeterminate content",
    ),
    pytest.param(
        Limits(max_fields=2),
        REQ_HEAD + _known_headers(*[_line(b"a", b"b")] * 3),
        r"header section has more than max_fields=2 field lines \(line 3 at offset 34\)",
        id="field count",
    ),
    pytest.param(
        Limits(max_fields=0),
        REQ_HEAD + b"\x00\x00" + _known_headers(_line(b"a", b"b")),
        r"trailer section has more than max_fields=0",
        id="field count trailers",
    ),
    pytest.param(
        Limits(max_informational=1),
        b"\x01\x40\x64\x00\x40\x67\x00\x40\xc8",
        r"more than max_informational=1 informational responses \(status 103 at offset 4\)",
        id="informational count",
    ),
]


@pytest.mark.parametrize(("limits", "data", "pattern"), LIMIT_ERRORS)
def test_limit_errors(limits: Limits, data: bytes, pattern: str) -> None:
    with pytest.raises(BinaryHttpError, match=pattern):
        decode_message(data, limits)


def test_limits_are_inclusive() -> None:
    data = REQ_HEAD + _known_headers(_line(b"ab", b"cd")) + b"\x03abc"
    req = decode_request(data, Limits(max_field_section_size=6, max_content_size=3, max_fields=1))
    assert req.headers == (Field(b"ab", b"cd"),)
    resp = b"\x01\x40\x64\x00\x40\xc8"
    assert decode_response(resp, Limits(max_informational=1)).informational[0].status == 100
    with pytest.raises(BinaryHttpError, match="max_informational=0"):
        decode_response(resp, Limits(max_informational=0))


def test_default_limits() -> None:
    assert Limits() == Limits(
        max_field_section_size=65536,
        max_content_size=16 * 1024 * 1024,
        max_fields=256,
        max_informational=8,
    )


ENCODE_ERRORS = [
    pytest.param(
        Request(b"GET", b"https", b"", b"/", (Field(b"Host", b"x"),)),
        r"invalid field b'Host' #0 in header section: uppercase byte 'H'",
        id="uppercase header",
    ),
    pytest.param(
        Request(b"GET", b"https", b"", b"/", trailers=(Field(b"ok", b"1"), Field(b"X", b"1"))),
        r"b'X' #1 in trailer section: uppercase",
        id="uppercase trailer",
    ),
    pytest.param(
        Request(b"GET", b"https", b"", b"/", (Field(b"", b"x"),)),
        r"field name is empty",
        id="empty name",
    ),
    pytest.param(
        Request(b"GET", b"https", b"", b"/", (Field(b"a", b"x\r\ny: z"),)),
        r"value contains byte 0x0d",
        id="bad value",
    ),
    pytest.param(
        Request(b"GET", b"https", b"", b"/", (Field(b":method", b"GET"),)),
        r"carried in control data",
        id="reserved pseudo",
    ),
    pytest.param(
        Request(b"", b"https", b"", b"/"),
        r"invalid request control data: method is empty",
        id="empty method",
    ),
    pytest.param(
        Request(b"GET", b"https", b"a b", b"/"),
        r"authority b'a b' has byte 0x20",
        id="authority with space",
    ),
    pytest.param(
        Response(199),
        r"final status code 199 is outside 200..599",
        id="final status 199",
    ),
    pytest.param(
        Response(600),
        r"final status code 600",
        id="final status 600",
    ),
    pytest.param(
        Response(200, informational=(InformationalResponse(200),)),
        r"informational status code 200 is outside 100..199",
        id="informational status 200",
    ),
    pytest.param(
        Response(200, informational=(InformationalResponse(103, (Field(b"Link", b"x"),)),)),
        r"#0 in informational response 103 header section: uppercase",
        id="uppercase informational",
    ),
]


@pytest.mark.parametrize(("msg", "pattern"), ENCODE_ERRORS)
@pytest.mark.parametrize("indeterminate", [False, True])
def test_encode_errors(msg: Request | Response, pattern: str, indeterminate: bool) -> None:
    with pytest.raises(BinaryHttpError, match=pattern):
        if isinstance(msg, Request):
            encode_request(msg, indeterminate=indeterminate)
        else:
            encode_response(msg, indeterminate=indeterminate)


def test_encode_negative_padding() -> None:
    with pytest.raises(BinaryHttpError, match="padding must be zero or more bytes, got -1"):
        encode_request(Request(b"GET", b"https", b"", b"/"), padding=-1)
    with pytest.raises(BinaryHttpError, match="padding"):
        encode_response(Response(200), padding=-1)


def test_encode_does_not_lowercase() -> None:
    req = Request(b"GET", b"https", b"", b"/", (Field(b"content-type", b"Text/Plain"),))
    assert decode_request(encode_request(req)) == req  # values keep their case


# --- varints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "value", "minimal"),
    [
        # RFC 9000 appendix A.1 examples.
        ("c2197c5eff14e88c", 151288809941952652, True),
        ("9d7f3e7d", 494878333, True),
        ("7bbd", 15293, True),
        ("25", 37, True),
        ("4025", 37, False),
        ("00", 0, True),
        ("3f", 63, True),
        ("4040", 64, True),
        ("7fff", 16383, True),
        ("80004000", 16384, True),
        ("bfffffff", 2**30 - 1, True),
        ("c000000040000000", 2**30, True),
        ("ffffffffffffffff", 2**62 - 1, True),
        ("c000000000000000", 0, False),
    ],
)
def test_varint_examples(hex_: str, value: int, minimal: bool) -> None:
    data = bytes.fromhex(hex_)
    assert decode_varint(data, 0) == (value, len(data))
    assert decode_varint(b"\xff" + data + b"\xff", 1) == (value, len(data) + 1)
    assert decode_varint(memoryview(data), 0) == (value, len(data))
    assert (encode_varint(value) == data) is minimal


@given(st.integers(0, 2**62 - 1))
def test_varint_round_trip(n: int) -> None:
    data = encode_varint(n)
    assert decode_varint(data, 0) == (n, len(data))
    sizes = ((1, 2**6), (2, 2**14), (4, 2**30), (8, 2**62))
    assert len(data) == next(size for size, bound in sizes if n < bound)


@pytest.mark.parametrize("n", [-1, 2**62, 2**64])
def test_varint_encode_out_of_range(n: int) -> None:
    with pytest.raises(BinaryHttpError, match=re.escape(f"cannot encode {n} as a varint")):
        encode_varint(n)


@pytest.mark.parametrize(
    ("data", "offset", "pattern"),
    [
        (b"", 0, r"truncated varint at offset 0: expected at least 1 byte, input is 0 bytes"),
        (b"\x25", 1, r"truncated varint at offset 1"),
        (b"\x25", -1, r"truncated varint at offset -1"),
        (b"\x40", 0, r"prefix 0x40 announces 2 bytes, only 1 left"),
        (b"\x00\x80\x00\x00", 1, r"offset 1: prefix 0x80 announces 4 bytes, only 3 left"),
        (b"\xc0" + bytes(6), 0, r"announces 8 bytes, only 7 left"),
    ],
)
def test_varint_decode_truncated(data: bytes, offset: int, pattern: str) -> None:
    with pytest.raises(BinaryHttpError, match=pattern):
        decode_varint(data, offset)


@FUZZ
@given(st.binary(max_size=10), st.integers(-2, 12))
def test_varint_decode_fuzz(data: bytes, offset: int) -> None:
    try:
        value, end = decode_varint(data, offset)
    except BinaryHttpError:
        return
    assert 0 <= value < 2**62
    assert offset < end <= len(data)
