"""Binary HTTP messages (RFC 9292), sans-IO.

Decisions taken from the RFC text, which callers may rely on:

* Truncation (s3.1, s3.2, s3.8). A decoder accepts a message that ends right after the
  control data (the final status for a response), after the header section, or after
  the content; the missing parts read as empty. It must not end anywhere else: inside
  a part, inside an informational response, before the final status, or (for the
  indeterminate-length form) after field lines or content chunks whose terminator is
  missing. ``encode_*(..., truncate=True)`` omits the empty trailing parts (trailers;
  then content if the trailers are empty; then the header section if both are), which
  reproduces the RFC 9458 appendix A messages.
* Padding (s3.8) is zero bytes after the trailer section; any non-zero byte there is
  "trailing bytes" and invalid. Zero bytes that follow a truncated message read as
  empty parts, as the RFC says they do.
* Field names (s3.6, which defers to RFC 9110 s5.1 and RFC 9113 s8.2.1) must be
  non-empty lowercase tokens. Uppercase names are rejected, on decode and on encode;
  nothing is lowercased silently. ``:method``, ``:scheme``, ``:authority``, ``:path``
  and ``:status`` are invalid as fields; other pseudo-fields (``:`` then a lowercase
  token) may open a header section but may not follow a regular field nor appear in
  trailers.
* Field values must not contain NUL, CR or LF, nor start or end with SP or HTAB.
* Request control data (s3.4, RFC 9113 s8.3.1): the method is a non-empty token; the
  scheme, authority and path may be empty (CONNECT, no authority) but must not contain
  control bytes, SP or DEL. That last rule is stricter than RFC 9292 asks; it keeps a
  decoded request from being split when replayed over HTTP/1.1.
* Status codes: informational 100..199, final 200..599.
* Varints may use more bytes than needed on decode (s3); encoding is always minimal.
  The indeterminate-length encoder writes non-empty content as a single chunk.
* Repeated fields (including ``cookie``) are kept as separate field lines, in order.
"""

from dataclasses import dataclass
from typing import cast

from privproc.wire.errors import BinaryHttpError
from privproc.wire.varint import decode_varint, encode_varint

__all__ = [
    "DEFAULT_LIMITS",
    "Field",
    "InformationalResponse",
    "Limits",
    "Request",
    "Response",
    "decode_message",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

_Bytes = bytes | bytearray | memoryview

_KNOWN_REQUEST = 0
_KNOWN_RESPONSE = 1
_INDETERMINATE_REQUEST = 2
_INDETERMINATE_RESPONSE = 3
_FRAMING_NAMES = {
    _KNOWN_REQUEST: "known-length request",
    _KNOWN_RESPONSE: "known-length response",
    _INDETERMINATE_REQUEST: "indeterminate-length request",
    _INDETERMINATE_RESPONSE: "indeterminate-length response",
}

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LOWER_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_CTL_SP_DEL = bytes(range(0x21)) + b"\x7f"
_RESERVED_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":status"))


@dataclass(frozen=True, slots=True)
class Field:
    """One field line: a lowercase name and its value, both raw bytes."""

    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request: control data, header fields, content and trailer fields."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple(self.headers))
        object.__setattr__(self, "trailers", tuple(self.trailers))


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """An interim (1xx) response that precedes the final one."""

    status: int
    headers: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple(self.headers))


@dataclass(frozen=True, slots=True)
class Response:
    """A final HTTP response, with the informational responses sent before it."""

    status: int
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()
    informational: tuple[InformationalResponse, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple(self.headers))
        object.__setattr__(self, "trailers", tuple(self.trailers))
        object.__setattr__(self, "informational", tuple(self.informational))


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits a decoder enforces (per field section, per message)."""

    max_field_section_size: int = 64 * 1024
    """Bytes of field lines in one header or trailer section (without its length/terminator)."""
    max_content_size: int = 16 * 1024 * 1024
    max_fields: int = 256
    """Field lines in one header or trailer section."""
    max_informational: int = 8


DEFAULT_LIMITS = Limits()


# --- helpers shared by encoder and decoder -------------------------------------------


def _show(data: bytes, limit: int = 40) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


def _first_bad(data: bytes, allowed: bytes, start: int = 0) -> int:
    """Index of the first byte of ``data[start:]`` not in ``allowed``, or -1."""
    bad = data[start:].translate(None, allowed)
    return data.index(bad[0], start) if bad else -1


def _name_problem(name: bytes) -> str | None:
    if not name:
        return "field name is empty"
    start = 1 if name[0] == 0x3A else 0
    if start and len(name) == 1:
        return "pseudo-field name has nothing after ':'"
    i = _first_bad(name, _LOWER_TCHAR, start)
    if i < 0:
        return None
    b = name[i]
    if 0x41 <= b <= 0x5A:
        return f"uppercase byte {chr(b)!r} at index {i} (field names must be lowercase)"
    return f"byte 0x{b:02x} at index {i} is not allowed in a field name"


def _value_problem(value: bytes) -> str | None:
    for bad in (b"\x00", b"\r", b"\n"):
        i = value.find(bad)
        if i >= 0:
            return f"value contains byte 0x{bad[0]:02x} at index {i}"
    if value and (value[0] in b" \t" or value[-1] in b" \t"):
        return "value starts or ends with whitespace"
    return None


def _check_field(
    name: bytes, value: bytes, section: str, where: str, *, headers: bool, regular_seen: bool
) -> bool:
    """Raise if the field line is invalid here; return whether a regular field was seen."""
    problem = _name_problem(name)
    if problem is None and name[0] == 0x3A:
        if name in _RESERVED_PSEUDO:
            problem = "this pseudo-field is carried in control data and cannot be a field"
        elif not headers:
            problem = "pseudo-fields are not allowed in trailers"
        elif regular_seen:
            problem = "pseudo-field follows a regular field"
    if problem is None:
        problem = _value_problem(value)
    if problem is not None:
        raise BinaryHttpError(f"invalid field {_show(name)} {where} in {section}: {problem}")
    return regular_seen or name[0] != 0x3A


def _control_problem(method: bytes, scheme: bytes, authority: bytes, path: bytes) -> str | None:
    if not method:
        return "method is empty"
    i = _first_bad(method, _TCHAR)
    if i >= 0:
        return f"method {_show(method)} has byte 0x{method[i]:02x} at index {i}, not a token"
    for label, part in (("scheme", scheme), ("authority", authority), ("path", path)):
        if len(part.translate(None, _CTL_SP_DEL)) != len(part):
            i = next(j for j, c in enumerate(part) if c <= 0x20 or c == 0x7F)
            return (
                f"{label} {_show(part)} has byte 0x{part[i]:02x} at index {i} "
                "(control bytes, space and DEL are not allowed)"
            )
    return None


# --- decoder -------------------------------------------------------------------------


class _Reader:
    """A cursor over ``buf[pos:end]``; ``scope`` names that range in error messages."""

    __slots__ = ("buf", "end", "pos", "scope")

    def __init__(self, buf: memoryview, pos: int, end: int, scope: str) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.scope = scope

    def at_end(self) -> bool:
        return self.pos >= self.end

    def varint(self, what: str) -> int:
        pos = self.pos
        if pos >= self.end:
            raise BinaryHttpError(
                f"truncated {self.scope}: expected {what} at offset {pos}, got end of {self.scope}"
            )
        size = 1 << (self.buf[pos] >> 6)
        if pos + size > self.end:
            raise BinaryHttpError(
                f"truncated {what} at offset {pos}: varint needs {size} bytes, "
                f"{self.end - pos} left in {self.scope}"
            )
        value, self.pos = decode_varint(self.buf, pos)
        return value

    def take(self, n: int, what: str) -> memoryview:
        pos = self.pos
        stop = pos + n
        if stop > self.end:
            raise BinaryHttpError(
                f"truncated {what} at offset {pos}: length says {n} bytes, "
                f"{self.end - pos} left in {self.scope}"
            )
        self.pos = stop
        return self.buf[pos:stop]


def _read_fields(
    r: _Reader, indeterminate: bool, section: str, limits: Limits, *, headers: bool
) -> tuple[Field, ...]:
    max_size = limits.max_field_section_size
    if indeterminate:
        src = r
        start = r.pos
        name_what = f"field name length or {section} terminator"
    else:
        len_offset = r.pos
        length = r.varint(f"{section} length")
        if length > max_size:
            raise BinaryHttpError(
                f"{section} at offset {len_offset} is {length} bytes, "
                f"over the limit max_field_section_size={max_size}"
            )
        start = r.pos
        r.take(length, section)
        src = _Reader(r.buf, start, r.pos, f"{section} (offsets {start}..{r.pos})")
        name_what = "field name length"

    fields: list[Field] = []
    regular_seen = False
    while indeterminate or not src.at_end():
        line_offset = src.pos
        name_len = src.varint(name_what)
        if name_len == 0:
            if indeterminate:
                break
            raise BinaryHttpError(f"zero-length field name at offset {line_offset} in {section}")
        if len(fields) >= limits.max_fields:
            raise BinaryHttpError(
                f"{section} has more than max_fields={limits.max_fields} field lines "
                f"(line {len(fields) + 1} at offset {line_offset})"
            )
        if indeterminate and src.pos + name_len - start > max_size:
            raise BinaryHttpError(
                f"{section} starting at offset {start} grows past the limit "
                f"max_field_section_size={max_size}: field name of {name_len} bytes "
                f"at offset {line_offset}"
            )
        name = bytes(src.take(name_len, "field name"))
        value_offset = src.pos
        value_len = src.varint("field value length")
        if indeterminate and src.pos + value_len - start > max_size:
            raise BinaryHttpError(
                f"{section} starting at offset {start} grows past the limit "
                f"max_field_section_size={max_size}: field value of {value_len} bytes "
                f"at offset {value_offset}"
            )
        value = bytes(src.take(value_len, "field value"))
        regular_seen = _check_field(
            name,
            value,
            section,
            f"at offset {line_offset}",
            headers=headers,
            regular_seen=regular_seen,
        )
        fields.append(Field(name, value))
    return tuple(fields)


def _read_content(r: _Reader, indeterminate: bool, limits: Limits) -> bytes:
    max_size = limits.max_content_size
    if not indeterminate:
        offset = r.pos
        length = r.varint("content length")
        if length > max_size:
            raise BinaryHttpError(
                f"content at offset {offset} is {length} bytes, "
                f"over the limit max_content_size={max_size}"
            )
        return bytes(r.take(length, "content"))
    chunks: list[memoryview] = []
    total = 0
    while True:
        offset = r.pos
        length = r.varint("content chunk length or content terminator")
        if length == 0:
            return b"".join(chunks)
        total += length
        if total > max_size:
            raise BinaryHttpError(
                f"content chunk of {length} bytes at offset {offset} brings the content to "
                f"{total} bytes, over the limit max_content_size={max_size}"
            )
        chunks.append(r.take(length, "content chunk"))


def _check_padding(r: _Reader) -> None:
    rest = bytes(r.buf[r.pos : r.end]).lstrip(b"\x00")
    if rest:
        offset = r.end - len(rest)
        raise BinaryHttpError(
            f"trailing bytes: non-zero byte 0x{rest[0]:02x} at offset {offset} after the "
            f"message ended at offset {r.pos}; only zero padding may follow"
        )


def _read_control(r: _Reader) -> tuple[bytes, bytes, bytes, bytes]:
    offset = r.pos
    method = bytes(r.take(r.varint("method length"), "method"))
    scheme = bytes(r.take(r.varint("scheme length"), "scheme"))
    authority = bytes(r.take(r.varint("authority length"), "authority"))
    path = bytes(r.take(r.varint("path length"), "path"))
    problem = _control_problem(method, scheme, authority, path)
    if problem is not None:
        raise BinaryHttpError(f"invalid request control data at offset {offset}: {problem}")
    return method, scheme, authority, path


def _read_status(r: _Reader) -> int:
    offset = r.pos
    status = r.varint("status code")
    if not 100 <= status <= 599:
        raise BinaryHttpError(
            f"invalid status code {status} at offset {offset}: expected 100..199 "
            f"(informational) or 200..599 (final)"
        )
    return status


def _decode(data: _Bytes, limits: Limits, want: int | None) -> Request | Response:
    buf = memoryview(data).cast("B")
    r = _Reader(buf, 0, len(buf), "message")
    framing = r.varint("framing indicator")
    if framing not in _FRAMING_NAMES:
        raise BinaryHttpError(f"unknown framing indicator {framing} at offset 0: expected 0..3")
    is_request = framing % 2 == 0
    if want is not None and is_request != (want == 0):
        expected = "request (0 or 2)" if want == 0 else "response (1 or 3)"
        raise BinaryHttpError(
            f"expected a {expected} framing indicator at offset 0, "
            f"got {framing} ({_FRAMING_NAMES[framing]})"
        )
    indeterminate = framing >= _INDETERMINATE_REQUEST

    control: tuple[bytes, bytes, bytes, bytes] | None = None
    informational: list[InformationalResponse] = []
    status = 0
    if is_request:
        control = _read_control(r)
    else:
        status_offset = r.pos
        status = _read_status(r)
        while status < 200:
            if len(informational) >= limits.max_informational:
                raise BinaryHttpError(
                    f"more than max_informational={limits.max_informational} informational "
                    f"responses (status {status} at offset {status_offset})"
                )
            fields = _read_fields(
                r,
                indeterminate,
                f"informational response {status} header section",
                limits,
                headers=True,
            )
            informational.append(InformationalResponse(status, fields))
            status_offset = r.pos
            status = _read_status(r)

    # Each later part may be truncated away when it and everything after it is empty.
    headers: tuple[Field, ...] = ()
    content = b""
    trailers: tuple[Field, ...] = ()
    if not r.at_end():
        headers = _read_fields(r, indeterminate, "header section", limits, headers=True)
        if not r.at_end():
            content = _read_content(r, indeterminate, limits)
            if not r.at_end():
                trailers = _read_fields(r, indeterminate, "trailer section", limits, headers=False)
                _check_padding(r)

    if control is not None:
        return Request(*control, headers=headers, content=content, trailers=trailers)
    return Response(status, headers, content, trailers, tuple(informational))


def decode_request(data: _Bytes, limits: Limits = DEFAULT_LIMITS) -> Request:
    """Decode a ``message/bhttp`` request (framing indicator 0 or 2)."""
    return cast(Request, _decode(data, limits, 0))


def decode_response(data: _Bytes, limits: Limits = DEFAULT_LIMITS) -> Response:
    """Decode a ``message/bhttp`` response (framing indicator 1 or 3)."""
    return cast(Response, _decode(data, limits, 1))


def decode_message(data: _Bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Decode a ``message/bhttp`` request or response, whichever the framing says."""
    return _decode(data, limits, None)


# --- encoder -------------------------------------------------------------------------


def _encode_fields(
    out: list[bytes],
    fields: tuple[Field, ...],
    section: str,
    indeterminate: bool,
    *,
    headers: bool,
) -> None:
    lines: list[bytes] = []
    regular_seen = False
    for i, f in enumerate(fields):
        regular_seen = _check_field(
            f.name, f.value, section, f"#{i}", headers=headers, regular_seen=regular_seen
        )
        lines += (encode_varint(len(f.name)), f.name, encode_varint(len(f.value)), f.value)
    body = b"".join(lines)
    if indeterminate:
        out += (body, b"\x00")
    else:
        out += (encode_varint(len(body)), body)


def _encode_tail(
    out: list[bytes],
    headers: tuple[Field, ...],
    content: bytes,
    trailers: tuple[Field, ...],
    *,
    indeterminate: bool,
    truncate: bool,
) -> None:
    # Truncation only ever drops empty parts, so nothing dropped needs validating.
    parts = 3
    if truncate and not trailers:
        parts = 2
        if not content:
            parts = 1 if headers else 0
    if parts >= 1:
        _encode_fields(out, headers, "header section", indeterminate, headers=True)
    if parts >= 2:
        if indeterminate:
            if content:
                out += (encode_varint(len(content)), content)
            out.append(b"\x00")
        else:
            out += (encode_varint(len(content)), content)
    if parts >= 3:
        _encode_fields(out, trailers, "trailer section", indeterminate, headers=False)


def _padding(padding: int) -> bytes:
    if padding < 0:
        raise BinaryHttpError(f"padding must be zero or more bytes, got {padding}")
    return bytes(padding)


def encode_request(
    req: Request, *, indeterminate: bool = False, padding: int = 0, truncate: bool = False
) -> bytes:
    """Encode ``req`` as ``message/bhttp``.

    ``indeterminate`` picks framing 2 instead of 0; ``padding`` appends that many zero
    bytes; ``truncate`` omits empty trailing parts as RFC 9292 s3.8 allows.
    """
    problem = _control_problem(req.method, req.scheme, req.authority, req.path)
    if problem is not None:
        raise BinaryHttpError(f"invalid request control data: {problem}")
    out = [encode_varint(_INDETERMINATE_REQUEST if indeterminate else _KNOWN_REQUEST)]
    for part in (req.method, req.scheme, req.authority, req.path):
        out += (encode_varint(len(part)), part)
    _encode_tail(
        out,
        req.headers,
        req.content,
        req.trailers,
        indeterminate=indeterminate,
        truncate=truncate,
    )
    out.append(_padding(padding))
    return b"".join(out)


def encode_response(
    resp: Response, *, indeterminate: bool = False, padding: int = 0, truncate: bool = False
) -> bytes:
    """Encode ``resp`` (informational responses first) as ``message/bhttp``.

    Keywords as for :func:`encode_request`; informational responses are never truncated.
    """
    if not 200 <= resp.status <= 599:
        raise BinaryHttpError(f"final status code {resp.status} is outside 200..599")
    out = [encode_varint(_INDETERMINATE_RESPONSE if indeterminate else _KNOWN_RESPONSE)]
    for info in resp.informational:
        if not 100 <= info.status <= 199:
            raise BinaryHttpError(f"informational status code {info.status} is outside 100..199")
        out.append(encode_varint(info.status))
        _encode_fields(
            out,
            info.headers,
            f"informational response {info.status} header section",
            indeterminate,
            headers=True,
        )
    out.append(encode_varint(resp.status))
    _encode_tail(
        out,
        resp.headers,
        resp.content,
        resp.trailers,
        indeterminate=indeterminate,
        truncate=truncate,
    )
    out.append(_padding(padding))
    return b"".join(out)
