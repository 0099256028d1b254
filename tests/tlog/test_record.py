from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privproc.tlog.record import RecordError, ReleaseRecord, decode_record

GOOD = ReleaseRecord(measurement=bytes(range(48)), model_sha256=bytes(32), version="1.2.3",
                     source="git:0123abcd", time=1764201600,
                     gpu=(("driver", b"\x05\x50"), ("vbios", b"\x96\x00")))


def test_encoding_is_documented_text() -> None:
    assert GOOD.encode() == (
        b"privproc-release/v1\n"
        b"measurement " + bytes(range(48)).hex().encode() + b"\n"
        b"gpu driver 0550\n"
        b"gpu vbios 9600\n"
        b"model sha256:" + b"00" * 32 + b"\n"
        b"version 1.2.3\n"
        b"source git:0123abcd\n"
        b"time 2025-11-27T00:00:00Z\n"
    )
    assert decode_record(GOOD.encode()) == GOOD


def test_without_gpu_lines() -> None:
    rec = ReleaseRecord(bytes(32), bytes(32), "v", "s", 0)
    assert decode_record(rec.encode()) == rec


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b"privproc-release/v1", b"privproc-release/v2"), "header"),
        (lambda b: b[:-1], "newline"),
        (lambda b: b.replace(b"gpu driver", b"gpu Driver"), "gpu name"),
        (lambda b: b.replace(b"time 2025-11-27T00:00:00Z", b"time 2025-13-27T00:00:00Z"),
         "not a valid date"),
        (lambda b: b.replace(b"version 1.2.3", b"version  1.2.3"), "version"),
        (lambda b: b + b"extra\n", "lines"),
        (lambda b: b.replace(b"measurement 00", b"measurement 0"), "hex"),
        (lambda b: b.replace(b"gpu driver 0550\ngpu vbios 9600\n",
                             b"gpu vbios 9600\ngpu driver 0550\n"), "sorted"),
        (lambda b: b.replace(b"model sha256:", b"model sha512:"), "sha256"),
    ],
)
def test_non_canonical_or_malformed_records_are_refused(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecordError, match=message):
        decode_record(mutate(GOOD.encode()))


def test_field_validation() -> None:
    with pytest.raises(RecordError, match="measurement must be 32 or 48 bytes"):
        ReleaseRecord(bytes(20), bytes(32), "v", "s", 0)
    with pytest.raises(RecordError, match="version"):
        ReleaseRecord(bytes(32), bytes(32), "has space", "s", 0)


@given(st.binary(max_size=600))
def test_fuzz_only_record_errors(data: bytes) -> None:
    with contextlib.suppress(RecordError):
        decode_record(data)


@given(st.integers(0, len(GOOD.encode()) - 1), st.integers(0, 255))
def test_any_changed_byte_is_refused_or_changes_the_record(pos: int, value: int) -> None:
    data = bytearray(GOOD.encode())
    if data[pos] == value:
        return
    data[pos] = value
    with contextlib.suppress(RecordError):
        assert decode_record(bytes(data)) != GOOD
