"""A receipt is handed over by whoever holds it: re-verifying a hostile one raises only
ReceiptError (the CLI prints it on one line), never a raw exception."""

from __future__ import annotations

import base64

import pytest

from privproc.attest import evidence as ev
from privproc.client.receipt import ReceiptError, verify_receipt
from privproc.tlog.record import format_time

from .test_transparency import gateway_config, trust


def receipt(evidence: str) -> dict[str, object]:
    return {"version": 2, "time": "2026-01-01T00:00:00Z", "evidence": evidence}


@pytest.mark.parametrize("evidence", ["\u00e9", "not base64!", "AA=A"])
def test_evidence_that_is_not_base64(evidence: str) -> None:
    with pytest.raises(ReceiptError, match="evidence: not base64"):
        verify_receipt(receipt(evidence), trust())


def test_evidence_whose_expiry_no_clock_can_hold() -> None:
    """A well-formed, unsigned bundle claiming to expire in the year 292 billion."""
    bundle = ev.EvidenceBundle(
        platform="simulated",
        evidence=ev.EvidenceParts(bytes(0x4A0), b"\x30\x00", b"\x30\x00", b"\x30\x00", None),
        key_config=gateway_config().encode(), expiry=(1 << 63) - 1)
    encoded = base64.b64encode(ev.encode_bundle(bundle)).decode()
    with pytest.raises(ReceiptError, match="evidence: does not verify"):
        verify_receipt(receipt(encoded), trust())


@pytest.mark.parametrize("value", [(1 << 63) - 1, -(1 << 63), 10**20])
def test_a_time_out_of_any_calendar_is_still_written(value: int) -> None:
    assert format_time(value) == f"{value} s since 1970 (out of range)"
