from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.tlog.record import (
    MAX_KEY_SIZE,
    MAX_RECORD_SIZE,
    PURPOSE_OHTTP_GATEWAY,
    KeyRecord,
    RecordError,
    ReleaseRecord,
    RevocationRecord,
    decode_entry,
    decode_key_record,
    decode_record,
    decode_revocation_record,
    entry_subject,
    privacypass_purpose,
)

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


# ------------------------------------------------------------------ key records

KEY = KeyRecord(purpose="privacypass-0002", owner="issuer.example.com",
                key=bytes.fromhex("0102abcdef"), not_before=1767225600, not_after=1769817600)
REVOCATION = RevocationRecord(measurement=bytes(range(48)), reason="CVE-2026-1234",
                              time=1767312000)
KEY_TEXT = (
    b"privproc-key/v1\n"
    b"purpose privacypass-0002\n"
    b"owner issuer.example.com\n"
    b"key 0102abcdef\n"
    b"not-before 2026-01-01T00:00:00Z\n"
    b"not-after 2026-01-31T00:00:00Z\n"
)
REVOCATION_TEXT = (
    b"privproc-revocation/v1\n"
    b"measurement " + bytes(range(48)).hex().encode() + b"\n"
    b"reason CVE-2026-1234\n"
    b"time 2026-01-02T00:00:00Z\n"
)


def test_key_record_encoding_is_documented_text() -> None:
    assert KEY.encode() == KEY_TEXT
    assert decode_key_record(KEY_TEXT) == KEY
    assert decode_entry(KEY_TEXT) == KEY
    assert KEY.key_sha256 == hashlib.sha256(bytes.fromhex("0102abcdef")).digest()


def test_key_record_round_trips() -> None:
    for rec in [
        KeyRecord(PURPOSE_OHTTP_GATEWAY, "gw", b"\x00", 0, 1),
        KeyRecord(privacypass_purpose(1), "a-1.b-2.example", bytes(range(256)), 5, 10**9),
        # the largest key, the longest owner and purpose, the last representable second
        KeyRecord("p" * 64, ".".join(["a" * 63] * 3) + "." + "b" * 61, b"\xff" * MAX_KEY_SIZE,
                  0, 253402300799),
    ]:
        data = rec.encode()
        assert len(data) <= MAX_RECORD_SIZE
        assert decode_entry(data) == rec
        assert decode_key_record(data) == rec
    assert KeyRecord("ohttp-gateway", "gw", b"k", 0, 253402300799).encode().endswith(
        b"not-after 9999-12-31T23:59:59Z\n")


def test_privacypass_purposes() -> None:
    assert privacypass_purpose(1) == "privacypass-0001"
    assert privacypass_purpose(2) == "privacypass-0002"
    assert privacypass_purpose(0xDA7A) == "privacypass-da7a"
    with pytest.raises(RecordError, match="token type"):
        privacypass_purpose(0x10000)


def test_key_validity_is_half_open() -> None:
    assert not KEY.valid_at(KEY.not_before - 1)
    assert KEY.valid_at(KEY.not_before)
    assert KEY.valid_at(KEY.not_after - 0.5)
    assert not KEY.valid_at(KEY.not_after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"not_after": 1767225600}, "must be after"),
        ({"not_after": 1767225599}, "must be after"),
        ({"not_before": -1}, "not-before out of range"),
        ({"not_after": 253402300800}, "not-after out of range"),
        ({"key": b""}, "key must be"),
        ({"key": bytes(MAX_KEY_SIZE + 1)}, "key must be"),
        ({"purpose": "Privacypass-0002"}, "purpose"),
        ({"purpose": "-ohttp"}, "purpose"),
        ({"purpose": "privacy pass"}, "purpose"),
        ({"purpose": "p" * 65}, "purpose"),
        ({"purpose": ""}, "purpose"),
        ({"owner": "Issuer.example.com"}, "owner"),
        ({"owner": "issuer..example.com"}, "owner"),
        ({"owner": "-issuer.example.com"}, "owner"),
        ({"owner": "issuer-.example.com"}, "owner"),
        ({"owner": "issuer.example.com."}, "owner"),
        ({"owner": "issuer_1.example.com"}, "owner"),
        ({"owner": "a" * 64}, "owner"),
        ({"owner": ".".join(["a" * 63] * 4)}, "owner"),
        ({"owner": ""}, "owner"),
        ({"owner": "issuer.example.com\n"}, "owner"),
    ],
)
def test_key_record_field_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"purpose": KEY.purpose, "owner": KEY.owner, "key": KEY.key,
                                 "not_before": KEY.not_before, "not_after": KEY.not_after}
    with pytest.raises(RecordError, match=message):
        KeyRecord(**{**fields, **kwargs})  # type: ignore[arg-type]


def _swap(data: bytes, a: bytes, b: bytes) -> bytes:
    return data.replace(a, b"\0").replace(b, a).replace(b"\0", b)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b"privproc-key/v1", b"privproc-key/v2"), "header"),
        (lambda b: b.replace(b"privproc-key/v1", b"Privproc-key/v1"), "header"),
        (lambda b: b"\xef\xbb\xbf" + b, "header"),
        (lambda b: b[:-1], "newline"),
        (lambda b: b + b"x", "newline"),
        (lambda b: b + b"extra\n", "lines"),
        (lambda b: b + b"\n", "lines"),
        (lambda b: b.replace(b"\n", b"\r\n"), "header"),
        (lambda b: b.replace(b"purpose ", b"purpose  "), "purpose"),
        (lambda b: b.replace(b"owner ", b"owner  "), "owner"),
        (lambda b: b.replace(b"key ", b"key  "), "lowercase hex"),
        (lambda b: b.replace(b"example.com\n", b"example.com \n"), "owner"),
        (lambda b: b.replace(b"0102abcdef", b"0102ABCDEF"), "lowercase hex"),
        (lambda b: b.replace(b"0102abcdef", b"102abcdef"), "lowercase hex"),
        (lambda b: b.replace(b"key 0102abcdef", b"key "), "lowercase hex"),
        (lambda b: b.replace(b"key 0102abcdef", b"key 0x0102abcdef"), "lowercase hex"),
        (lambda b: b.replace(b"purpose privacypass-0002", b"purpose Privacypass-0002"),
         "purpose"),
        (lambda b: b.replace(b"owner issuer.example.com", b"owner Issuer.example.com"),
         "owner"),
        (lambda b: b.replace(b"owner issuer.example.com", b"owner issuer..example.com"),
         "owner"),
        (lambda b: _swap(b, b"purpose privacypass-0002", b"owner issuer.example.com"),
         "expected a 'purpose' line"),
        (lambda b: b.replace(b"not-before", b"not_before"), "expected a 'not-before' line"),
        (lambda b: _swap(b, b"2026-01-01T00:00:00Z", b"2026-01-31T00:00:00Z"), "must be after"),
        (lambda b: b.replace(b"2026-01-31T00:00:00Z", b"2026-01-01T00:00:00Z"), "must be after"),
        (lambda b: b.replace(b"2026-01-31T00:00:00Z", b"2026-02-30T00:00:00Z"),
         "not a valid date"),
        (lambda b: b.replace(b"2026-01-31T00:00:00Z", b"2026-01-31 00:00:00Z"), "YYYY"),
        (lambda b: b.replace(b"2026-01-31T00:00:00Z", b"2026-01-31T00:00:00+00:00"), "YYYY"),
        (lambda b: b.replace(b"2026-01-01T00:00:00Z", b"1969-12-31T23:59:59Z"), "out of range"),
        (lambda b: b.replace(b"2026-01-31T00:00:00Z",
                             "2026-01-31T00:00:0\u0660Z".encode()), "canonical"),
    ],
)
def test_non_canonical_or_malformed_key_records_are_refused(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = mutate(KEY_TEXT)
    assert data != KEY_TEXT
    with pytest.raises(RecordError, match=message):
        decode_key_record(data)
    with pytest.raises(RecordError):
        decode_entry(data)


# ------------------------------------------------------------------ revocation records


def test_revocation_record_encoding_is_documented_text() -> None:
    assert REVOCATION.encode() == REVOCATION_TEXT
    assert decode_revocation_record(REVOCATION_TEXT) == REVOCATION
    assert decode_entry(REVOCATION_TEXT) == REVOCATION


def test_revocation_record_round_trips() -> None:
    for rec in [
        RevocationRecord(bytes(32), "key-compromise", 0),
        RevocationRecord(b"\xff" * 48, "a" * 128, 253402300799),
        RevocationRecord(bytes(48), "A.z_0+9:/@-", 1),
    ]:
        assert decode_entry(rec.encode()) == rec
        assert decode_revocation_record(rec.encode()) == rec


def test_revocation_record_field_validation() -> None:
    with pytest.raises(RecordError, match="measurement must be 32 or 48 bytes"):
        RevocationRecord(bytes(33), "r", 0)
    with pytest.raises(RecordError, match="reason"):
        RevocationRecord(bytes(32), "two words", 0)
    with pytest.raises(RecordError, match="reason"):
        RevocationRecord(bytes(32), "", 0)
    with pytest.raises(RecordError, match="reason"):
        RevocationRecord(bytes(32), "a" * 129, 0)
    with pytest.raises(RecordError, match="time out of range"):
        RevocationRecord(bytes(32), "r", -1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b"privproc-revocation/v1", b"privproc-revocation/v2"), "header"),
        (lambda b: b[:-1], "newline"),
        (lambda b: b + b"x", "newline"),
        (lambda b: b + b"extra\n", "lines"),
        (lambda b: b.replace(b"\n", b"\r\n"), "header"),
        (lambda b: b.replace(b"measurement ", b"measurement  "), "lowercase hex"),
        (lambda b: b.replace(b"reason ", b"reason  "), "reason"),
        (lambda b: b.replace(b"CVE-2026-1234", b"CVE-2026-1234 "), "reason"),
        (lambda b: b.replace(b"measurement 0001", b"measurement 0001".upper()),
         "expected a 'measurement' line"),
        (lambda b: b.replace(b"0a0b0c", b"0A0B0C"), "lowercase hex"),
        (lambda b: b.replace(b"measurement 00", b"measurement 0"), "lowercase hex"),
        (lambda b: b.replace(b"measurement 0001", b"measurement 01"), "32 or 48 bytes"),
        (lambda b: b.replace(b"time 2026-01-02T00:00:00Z", b"time 2026-01-02T00:00:00"),
         "YYYY"),
        (lambda b: b.replace(b"time 2026-01-02T00:00:00Z", b"time 2026-01-02T24:00:00Z"),
         "not a valid date"),
        (lambda b: _swap(b, b"reason CVE-2026-1234", b"time 2026-01-02T00:00:00Z"),
         "expected a 'reason' line"),
    ],
)
def test_non_canonical_or_malformed_revocations_are_refused(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = mutate(REVOCATION_TEXT)
    assert data != REVOCATION_TEXT
    with pytest.raises(RecordError, match=message):
        decode_revocation_record(data)
    with pytest.raises(RecordError):
        decode_entry(data)


# ------------------------------------------------------------------ any entry


def test_decode_entry_dispatches_on_the_header() -> None:
    assert decode_entry(GOOD.encode()) == GOOD
    assert decode_entry(KEY_TEXT) == KEY
    assert decode_entry(REVOCATION_TEXT) == REVOCATION
    for data in [b"", b"\n", b"not a record\n", b"privproc-release/v2\n", b"privproc-key/v1",
                 b"privproc-key/v1 \n", b"\xff\xfe\n", b"x" * 5000]:
        with pytest.raises(RecordError):
            decode_entry(data)
    with pytest.raises(RecordError, match="unknown record kind"):
        decode_entry(b"privproc-key/v2\npurpose x\n")
    # a record of one kind under another kind's header
    with pytest.raises(RecordError):
        decode_entry(KEY_TEXT.replace(b"privproc-key/v1", b"privproc-revocation/v1"))
    with pytest.raises(RecordError, match="header"):
        decode_key_record(REVOCATION_TEXT)
    with pytest.raises(RecordError, match="header"):
        decode_revocation_record(KEY_TEXT)
    with pytest.raises(RecordError, match="header"):
        decode_record(KEY_TEXT)


def test_entry_subject() -> None:
    assert entry_subject(GOOD.encode()) == GOOD.measurement
    assert entry_subject(REVOCATION_TEXT) == REVOCATION.measurement
    assert entry_subject(KEY_TEXT) == hashlib.sha256(KEY.key).digest()
    assert GOOD.subject == GOOD.measurement and KEY.subject == KEY.key_sha256
    for foreign in [b"", b"not a record", b"\xff\x00", KEY_TEXT[:-1], KEY_TEXT + b"x\n",
                    b"privproc-key/v2\n" + KEY_TEXT.split(b"\n", 1)[1],
                    REVOCATION_TEXT.replace(b"CVE", b"C E")]:
        assert entry_subject(foreign) is None


def _assert_decodes_canonically(data: bytes) -> None:
    try:
        record = decode_entry(data)
    except RecordError:
        assert entry_subject(data) is None
        return
    assert record.encode() == data
    assert entry_subject(data) == record.subject


_HEADERS = [b"privproc-release/v1", b"privproc-key/v1", b"privproc-revocation/v1", b"other"]
_LINE = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([
        b"purpose privacypass-0001", b"owner gw", b"key 00", b"key 0A", b"not-before ",
        b"not-after 2026-01-31T00:00:00Z", b"not-before 2026-01-01T00:00:00Z",
        b"measurement " + b"00" * 32, b"measurement " + b"ab" * 48, b"reason r",
        b"time 1970-01-01T00:00:00Z", b"time 9999-12-31T23:59:59Z", b"model sha256:" + b"11" * 32,
        b"version 1", b"source s", b"gpu a 00",
    ]),
)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_decode_entry_of_arbitrary_bytes(data: bytes) -> None:
    _assert_decodes_canonically(data)


@settings(max_examples=300)
@given(st.sampled_from(_HEADERS), st.lists(_LINE, max_size=8), st.booleans())
def test_decode_entry_of_record_like_text(header: bytes, lines: list[bytes], end: bool) -> None:
    _assert_decodes_canonically(b"\n".join([header, *lines]) + (b"\n" if end else b""))


@settings(max_examples=300)
@given(st.sampled_from([GOOD.encode(), KEY_TEXT, REVOCATION_TEXT]), st.data())
def test_decode_entry_of_changed_records(original: bytes, data: st.DataObject) -> None:
    changed = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(changed)))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        value = data.draw(st.integers(0, 255))
        if action == "set" and pos < len(changed):
            changed[pos] = value
        elif action == "insert":
            changed.insert(pos, value)
        elif pos < len(changed):
            del changed[pos]
    _assert_decodes_canonically(bytes(changed))
    if bytes(changed) != original:
        with contextlib.suppress(RecordError):
            assert decode_entry(bytes(changed)) != decode_entry(original)
