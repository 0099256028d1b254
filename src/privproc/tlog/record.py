"""The entries of privproc's transparency log: releases, keys, revocations.

Every entry is a small UTF-8 text whose first line names its kind and version, canonical
so that one record has exactly one encoding (and so one leaf hash). Three kinds exist;
:func:`decode_entry` parses any of them and refuses everything else.

A **release record** (``privproc-release/v1``) names a node build clients may talk to::

    privproc-release/v1
    measurement <hex, 32 or 48 bytes>
    gpu <name> <hex>            (zero or more, names sorted, each at most once)
    model sha256:<hex, 32 bytes>
    version <token>
    source <token>
    time <YYYY-MM-DDTHH:MM:SSZ>

Every line ends in ``\\n``; there are no other lines, no blank lines, no spaces beyond
the single separators. ``measurement`` is the node's launch measurement (the SEV-SNP
launch digest, 48 bytes, or the simulated platform's 32- or 48-byte digest). ``gpu`` lines
carry the GPU reference values (e.g. ``gpu vbios <hex>``). ``version`` and ``source``
(the source revision) are tokens of ``[A-Za-z0-9._+:/@-]``, 1 to 128 characters.
A record is at most 4 KiB.

A **key record** (``privproc-key/v1``) makes a public key that clients rely on public::

    privproc-key/v1
    purpose <token: ohttp-gateway | privacypass-0001 | privacypass-0002 | ...>
    owner <name: the gateway's or issuer's name>
    key <hex: the key as clients receive it>
    not-before <YYYY-MM-DDTHH:MM:SSZ>
    not-after <YYYY-MM-DDTHH:MM:SSZ>

For ``ohttp-gateway`` the key is one RFC 9458 key configuration; for ``privacypass-0001``
and ``privacypass-0002`` it is the ``token-key`` of the issuer directory (RFC 9578) for
that token type. A client uses a key only while ``not-before <= now < not-after`` and
only if it is logged; an auditor counts how many keys of one purpose and owner are valid
at once (more than the policy allows means some clients may be getting keys of their own).

A **revocation record** (``privproc-revocation/v1``) withdraws every release of a
measurement; clients refuse nodes running it from then on::

    privproc-revocation/v1
    measurement <hex, 32 or 48 bytes>
    reason <token>
    time <YYYY-MM-DDTHH:MM:SSZ>

Purposes and reasons are tokens of ``[a-z0-9-]`` (1 to 64) and ``[A-Za-z0-9._+:/@-]`` (1 to
128); owners are lowercase DNS-style names of at most 253 characters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from privproc.errors import PrivprocError

HEADER = "privproc-release/v1"
KEY_HEADER = "privproc-key/v1"
REVOCATION_HEADER = "privproc-revocation/v1"
MAX_RECORD_SIZE = 4096
MAX_KEY_SIZE = 1800  # hex-encoded it still fits a record
PURPOSE_OHTTP_GATEWAY = "ohttp-gateway"
_TOKEN = re.compile(r"[A-Za-z0-9._+:/@-]{1,128}")
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_OWNER = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                    r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class RecordError(PrivprocError, ValueError):
    """A log record is malformed or not canonical."""


def _check_hex_len(what: str, value: bytes, lengths: tuple[int, ...]) -> None:
    if len(value) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise RecordError(f"{what} must be {allowed} bytes, got {len(value)}")


def _check_time(what: str, value: int) -> None:
    if not 0 <= value < 253402300800:  # year 10000
        raise RecordError(f"{what} out of range: {value}")


def _check_token(what: str, token: str) -> None:
    if not _TOKEN.fullmatch(token):
        raise RecordError(f"{what} must be 1-128 chars of [A-Za-z0-9._+:/@-], got {token!r}")


def format_time(value: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for seconds since the epoch (UTC); a time no calendar here
    holds (from a hostile record or evidence, in an error message) as a number."""
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{value} s since 1970 (out of range)"


def _finish(lines: list[str]) -> bytes:
    data = ("\n".join(lines) + "\n").encode()
    if len(data) > MAX_RECORD_SIZE:
        raise RecordError(f"record is {len(data)} bytes, limit {MAX_RECORD_SIZE}")
    return data


@dataclass(frozen=True)
class ReleaseRecord:
    measurement: bytes
    model_sha256: bytes
    version: str
    source: str
    time: int  # seconds since the epoch, UTC
    gpu: tuple[tuple[str, bytes], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_hex_len("measurement", self.measurement, (32, 48))
        _check_hex_len("model digest", self.model_sha256, (32,))
        _check_token("version", self.version)
        _check_token("source", self.source)
        names = [name for name, _ in self.gpu]
        if names != sorted(set(names)):
            raise RecordError(f"gpu names must be unique and sorted, got {names}")
        for name, value in self.gpu:
            if not _NAME.fullmatch(name):
                raise RecordError(f"gpu name must match [a-z0-9][a-z0-9._-]*, got {name!r}")
            if not 1 <= len(value) <= 64:
                raise RecordError(f"gpu value {name} must be 1-64 bytes, got {len(value)}")
        _check_time("time", self.time)

    @property
    def subject(self) -> bytes:
        """What the log indexes this record under: the measurement."""
        return self.measurement

    def encode(self) -> bytes:
        lines = [HEADER, f"measurement {self.measurement.hex()}"]
        lines += [f"gpu {name} {value.hex()}" for name, value in self.gpu]
        lines += [
            f"model sha256:{self.model_sha256.hex()}",
            f"version {self.version}",
            f"source {self.source}",
            f"time {format_time(self.time)}",
        ]
        return _finish(lines)


def privacypass_purpose(token_type: int) -> str:
    """The key-record purpose of an issuer's token key of ``token_type``."""
    if not 0 <= token_type <= 0xFFFF:
        raise RecordError(f"token type must be 0..0xffff, got {token_type}")
    return f"privacypass-{token_type:04x}"


@dataclass(frozen=True)
class KeyRecord:
    """A public key clients may use, who owns it, what for, and when it is valid."""

    purpose: str
    owner: str
    key: bytes
    not_before: int
    not_after: int

    def __post_init__(self) -> None:
        if not _PURPOSE.fullmatch(self.purpose):
            raise RecordError(f"purpose must be 1-64 chars of [a-z0-9-], got {self.purpose!r}")
        if not _OWNER.fullmatch(self.owner):
            raise RecordError(f"owner must be a lowercase DNS-style name, got {self.owner!r}")
        if not 1 <= len(self.key) <= MAX_KEY_SIZE:
            raise RecordError(f"key must be 1-{MAX_KEY_SIZE} bytes, got {len(self.key)}")
        _check_time("not-before", self.not_before)
        _check_time("not-after", self.not_after)
        if self.not_after <= self.not_before:
            raise RecordError(f"not-after ({format_time(self.not_after)}) must be after "
                              f"not-before ({format_time(self.not_before)})")

    @property
    def key_sha256(self) -> bytes:
        return hashlib.sha256(self.key).digest()

    @property
    def subject(self) -> bytes:
        """What the log indexes this record under: the SHA-256 of the key."""
        return self.key_sha256

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now < self.not_after

    def encode(self) -> bytes:
        return _finish([
            KEY_HEADER,
            f"purpose {self.purpose}",
            f"owner {self.owner}",
            f"key {self.key.hex()}",
            f"not-before {format_time(self.not_before)}",
            f"not-after {format_time(self.not_after)}",
        ])


@dataclass(frozen=True)
class RevocationRecord:
    """Every release of ``measurement`` is withdrawn: clients refuse nodes running it."""

    measurement: bytes
    reason: str
    time: int

    def __post_init__(self) -> None:
        _check_hex_len("measurement", self.measurement, (32, 48))
        _check_token("reason", self.reason)
        _check_time("time", self.time)

    @property
    def subject(self) -> bytes:
        return self.measurement

    def encode(self) -> bytes:
        return _finish([
            REVOCATION_HEADER,
            f"measurement {self.measurement.hex()}",
            f"reason {self.reason}",
            f"time {format_time(self.time)}",
        ])


LogRecord = ReleaseRecord | KeyRecord | RevocationRecord


def _hex(what: str, text: str) -> bytes:
    if not _HEX.fullmatch(text):
        raise RecordError(f"{what} must be lowercase hex, got {text[:80]!r}")
    return bytes.fromhex(text)


def _field(line: str, key: str) -> str:
    prefix = key + " "
    if not line.startswith(prefix):
        raise RecordError(f"expected a {key!r} line, got {line[:80]!r}")
    return line[len(prefix) :]


def _time(what: str, stamp: str) -> int:
    if not _TIME.fullmatch(stamp):
        raise RecordError(f"{what} must be YYYY-MM-DDTHH:MM:SSZ, got {stamp[:40]!r}")
    try:
        return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                   .timestamp())
    except ValueError:
        raise RecordError(f"{what} is not a valid date: {stamp!r}") from None


def _lines(data: bytes) -> list[str]:
    if len(data) > MAX_RECORD_SIZE:
        raise RecordError(f"record is {len(data)} bytes, limit {MAX_RECORD_SIZE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("record is not UTF-8") from None
    if not text.endswith("\n"):
        raise RecordError("record must end with a newline")
    return text[:-1].split("\n")


def _canonical(record: LogRecord, data: bytes) -> None:
    if record.encode() != data:
        raise RecordError("record is not in canonical form")


def decode_record(data: bytes) -> ReleaseRecord:
    """Parse a release record, accepting only the canonical encoding."""
    lines = _lines(data)
    if lines[0] != HEADER:
        raise RecordError(f"expected header {HEADER!r}, got {lines[0][:80]!r}")
    if len(lines) < 6:
        raise RecordError(f"record has {len(lines)} lines, expected at least 6")
    measurement = _hex("measurement", _field(lines[1], "measurement"))
    gpu: list[tuple[str, bytes]] = []
    index = 2
    while index < len(lines) and lines[index].startswith("gpu "):
        parts = lines[index].split(" ")
        if len(parts) != 3:
            raise RecordError(f"gpu line must be 'gpu NAME HEX', got {lines[index][:80]!r}")
        gpu.append((parts[1], _hex(f"gpu {parts[1]}", parts[2])))
        index += 1
    if len(lines) != index + 4:
        raise RecordError(f"record has {len(lines)} lines, expected {index + 4}")
    model = _field(lines[index], "model")
    if not model.startswith("sha256:"):
        raise RecordError(f"model digest must be 'sha256:HEX', got {model[:80]!r}")
    record = ReleaseRecord(
        measurement=measurement,
        model_sha256=_hex("model digest", model[len("sha256:") :]),
        version=_field(lines[index + 1], "version"),
        source=_field(lines[index + 2], "source"),
        time=_time("time", _field(lines[index + 3], "time")),
        gpu=tuple(gpu),
    )
    _canonical(record, data)
    return record


def decode_key_record(data: bytes) -> KeyRecord:
    """Parse a key record, accepting only the canonical encoding."""
    lines = _lines(data)
    if lines[0] != KEY_HEADER:
        raise RecordError(f"expected header {KEY_HEADER!r}, got {lines[0][:80]!r}")
    if len(lines) != 6:
        raise RecordError(f"key record has {len(lines)} lines, expected 6")
    record = KeyRecord(
        purpose=_field(lines[1], "purpose"),
        owner=_field(lines[2], "owner"),
        key=_hex("key", _field(lines[3], "key")),
        not_before=_time("not-before", _field(lines[4], "not-before")),
        not_after=_time("not-after", _field(lines[5], "not-after")),
    )
    _canonical(record, data)
    return record


def decode_revocation_record(data: bytes) -> RevocationRecord:
    """Parse a revocation record, accepting only the canonical encoding."""
    lines = _lines(data)
    if lines[0] != REVOCATION_HEADER:
        raise RecordError(f"expected header {REVOCATION_HEADER!r}, got {lines[0][:80]!r}")
    if len(lines) != 4:
        raise RecordError(f"revocation record has {len(lines)} lines, expected 4")
    record = RevocationRecord(
        measurement=_hex("measurement", _field(lines[1], "measurement")),
        reason=_field(lines[2], "reason"),
        time=_time("time", _field(lines[3], "time")),
    )
    _canonical(record, data)
    return record


_DECODERS: dict[str, Callable[[bytes], LogRecord]] = {
    HEADER: decode_record,
    KEY_HEADER: decode_key_record,
    REVOCATION_HEADER: decode_revocation_record,
}


def decode_entry(data: bytes) -> LogRecord:
    """Parse any log record by its header line; anything else is a RecordError."""
    header = data.split(b"\n", 1)[0][:80].decode("utf-8", errors="replace")
    decoder = _DECODERS.get(header)
    if decoder is None:
        raise RecordError(f"unknown record kind {header!r}; known: {sorted(_DECODERS)}")
    return decoder(data)


def entry_subject(data: bytes) -> bytes | None:
    """What the log indexes an entry under (a measurement, or a key's SHA-256), or None
    for an entry that is not a privproc record."""
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if header not in _DECODERS:
        return None
    try:
        return decode_entry(data).subject
    except RecordError:
        return None
