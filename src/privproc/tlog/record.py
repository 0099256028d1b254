"""Release records: the entries of privproc's transparency log.

A release record is a small UTF-8 text, canonical so that one release has exactly one
encoding (and so one leaf hash). Version 1::

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

HEADER = "privproc-release/v1"
MAX_RECORD_SIZE = 4096
_TOKEN = re.compile(r"[A-Za-z0-9._+:/@-]{1,128}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class RecordError(ValueError):
    """A release record is malformed or not canonical."""


def _check_hex_len(what: str, value: bytes, lengths: tuple[int, ...]) -> None:
    if len(value) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise RecordError(f"{what} must be {allowed} bytes, got {len(value)}")


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
        for what, token in (("version", self.version), ("source", self.source)):
            if not _TOKEN.fullmatch(token):
                raise RecordError(
                    f"{what} must be 1-128 chars of [A-Za-z0-9._+:/@-], got {token!r}"
                )
        names = [name for name, _ in self.gpu]
        if names != sorted(set(names)):
            raise RecordError(f"gpu names must be unique and sorted, got {names}")
        for name, value in self.gpu:
            if not _NAME.fullmatch(name):
                raise RecordError(f"gpu name must match [a-z0-9][a-z0-9._-]*, got {name!r}")
            if not 1 <= len(value) <= 64:
                raise RecordError(f"gpu value {name} must be 1-64 bytes, got {len(value)}")
        if not 0 <= self.time < 253402300800:  # year 10000
            raise RecordError(f"time out of range: {self.time}")

    def encode(self) -> bytes:
        lines = [HEADER, f"measurement {self.measurement.hex()}"]
        lines += [f"gpu {name} {value.hex()}" for name, value in self.gpu]
        stamp = datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines += [
            f"model sha256:{self.model_sha256.hex()}",
            f"version {self.version}",
            f"source {self.source}",
            f"time {stamp}",
        ]
        data = ("\n".join(lines) + "\n").encode()
        if len(data) > MAX_RECORD_SIZE:
            raise RecordError(f"record is {len(data)} bytes, limit {MAX_RECORD_SIZE}")
        return data


def _hex(what: str, text: str) -> bytes:
    if not _HEX.fullmatch(text):
        raise RecordError(f"{what} must be lowercase hex, got {text[:80]!r}")
    return bytes.fromhex(text)


def _field(line: str, key: str) -> str:
    prefix = key + " "
    if not line.startswith(prefix):
        raise RecordError(f"expected a {key!r} line, got {line[:80]!r}")
    return line[len(prefix) :]


def decode_record(data: bytes) -> ReleaseRecord:
    """Parse a record, accepting only the canonical encoding."""
    if len(data) > MAX_RECORD_SIZE:
        raise RecordError(f"record is {len(data)} bytes, limit {MAX_RECORD_SIZE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("record is not UTF-8") from None
    if not text.endswith("\n"):
        raise RecordError("record must end with a newline")
    lines = text[:-1].split("\n")
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
    stamp = _field(lines[index + 3], "time")
    if not _TIME.fullmatch(stamp):
        raise RecordError(f"time must be YYYY-MM-DDTHH:MM:SSZ, got {stamp[:40]!r}")
    try:
        when = int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise RecordError(f"time is not a valid date: {stamp!r}") from None
    record = ReleaseRecord(
        measurement=measurement,
        model_sha256=_hex("model digest", model[len("sha256:") :]),
        version=_field(lines[index + 1], "version"),
        source=_field(lines[index + 2], "source"),
        time=when,
        gpu=tuple(gpu),
    )
    if record.encode() != data:
        raise RecordError("record is not in canonical form")
    return record
