"""C2SP tlog-checkpoint parsing and tlog-cosignature/v1 Ed25519 cosigning."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.wire.checkpoint import (
    COSIGNATURE_SIZE,
    MAX_TIMESTAMP,
    Checkpoint,
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    generate_cosigner,
    open_checkpoint,
    parse_checkpoint,
    parse_cosignature,
)
from privproc.wire.errors import CheckpointError, NoteError
from privproc.wire.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    Note,
    add_signatures,
    compute_key_hash,
    parse_note,
    parse_verifier_key,
    sign_note,
)

VECTORS = Path(__file__).parent.parent / "vectors" / "notes"
ROOT = bytes(range(32))
ORIGIN = "example.com/log"


def _cp(**kw: object) -> Checkpoint:
    args: dict[str, object] = {"origin": ORIGIN, "size": 7, "root_hash": ROOT, "extensions": ()}
    args.update(kw)
    return Checkpoint(**args)  # type: ignore[arg-type]


def _log() -> Ed25519Signer:
    return Ed25519Signer(ORIGIN, b"\x01" * 32)


def _witness(n: int) -> CosignatureSigner:
    return CosignatureSigner(f"witness{n}.example", bytes([0x10 + n]) * 32)


# --------------------------------------------------------------------------- vectors


def test_c2sp_cosignature_example_parses() -> None:
    msg = (VECTORS / "c2sp-tlog-cosignature-example-PARSE-ONLY-no-vkey.note").read_bytes()
    n = parse_note(msg)
    cp = parse_checkpoint(n.text)
    assert cp == Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
        (),
    )
    assert cp.to_text() == n.text
    log_sig, cosig = n.signatures
    # The log signature: a plain Ed25519 signature, 4 + 64 bytes.
    assert log_sig.name == "example.com/behind-the-sofa"
    assert len(log_sig.signature) == 64
    # The witness cosignature: key ID + u64 timestamp + Ed25519 signature = 76 bytes.
    assert cosig.name == "witness.example.com/w1"
    assert cosig.key_hash == 0x8D66CF3F
    assert 4 + len(cosig.signature) == 76
    timestamp, ed_sig = parse_cosignature(cosig.signature)
    assert timestamp == 1679315147  # the "time" line of the spec's signed-message example
    assert len(ed_sig) == 64
    with pytest.raises(CheckpointError, match="expected 72 bytes"):
        parse_cosignature(log_sig.signature)


def test_spec_cosigned_message_layout() -> None:
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosignature_message(body, 1679315147) == (b"cosignature/v1\ntime 1679315147\n" + body)
    assert cosignature_message(body, 0).startswith(b"cosignature/v1\ntime 0\n")


def test_real_sum_golang_org_checkpoint() -> None:
    msg = (VECTORS / "sum.golang.org-checkpoint-6476701.note").read_bytes()
    vkey = (VECTORS / "sum.golang.org-checkpoint-6476701.vkey").read_text().strip()
    log = Ed25519Verifier.from_key(vkey)
    vc = open_checkpoint(msg, log, origin="go.sum database tree")
    assert vc.checkpoint.origin == "go.sum database tree"
    assert vc.checkpoint.size == 6476701
    assert vc.checkpoint.root_hash == base64.b64decode(
        "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
    )
    assert vc.log_signature.name == "sum.golang.org"
    assert vc.cosignatures == ()
    with pytest.raises(CheckpointError, match=r"origin: expected 'sum\.golang\.org', got 'go\.sum"):
        open_checkpoint(msg, log, origin="sum.golang.org")


# --------------------------------------------------------------------------- checkpoint text


def test_checkpoint_text_round_trip() -> None:
    cp = _cp(size=0, extensions=("ext one", "\u00e9xt\u2014two"))
    text = cp.to_text()
    b64 = base64.b64encode(ROOT)
    assert text == b"example.com/log\n0\n" + b64 + "\next one\n\u00e9xt\u2014two\n".encode()
    assert parse_checkpoint(text) == cp
    big = _cp(size=2**64 - 1)
    assert parse_checkpoint(big.to_text()).size == 2**64 - 1
    assert _cp(extensions=["a"]).extensions == ("a",)


H = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"o\n1\n{H}", "final newline"),
        ("o\n1\n", "at least 3 lines"),
        ("", "final newline"),
        ("\n", "at least 3 lines"),
        (f"\n1\n{H}\n", "origin: expected a non-empty line"),
        (f"o\n01\n{H}\n", "without leading zeroes"),
        (f"o\n00\n{H}\n", "without leading zeroes"),
        (f"o\n+1\n{H}\n", "without leading zeroes"),
        (f"o\n-1\n{H}\n", "without leading zeroes"),
        (f"o\n 1\n{H}\n", "without leading zeroes"),
        (f"o\n1 \n{H}\n", "without leading zeroes"),
        (f"o\n1_000\n{H}\n", "without leading zeroes"),
        (f"o\n\u0663\n{H}\n", "without leading zeroes"),  # ARABIC-INDIC DIGIT THREE
        (f"o\n0x10\n{H}\n", "without leading zeroes"),
        (f"o\n\n{H}\n", "without leading zeroes"),
        (f"o\n{2**64}\n{H}\n", "< 2\\*\\*64"),
        (f"o\n{10**25}\n{H}\n", "without leading zeroes"),
        ("o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", "expected 32 bytes, got 31"),
        ("o\n1\n" + base64.b64encode(bytes(33)).decode() + "\n", "expected 32 bytes, got 33"),
        ("o\n1\n" + H[:-2] + "J=\n", "non-canonical base64"),
        ("o\n1\n" + H.rstrip("=") + "\n", "invalid base64"),
        ("o\n1\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n", "invalid base64"),
        ("o\n1\n\n", "invalid base64|expected 32 bytes"),
        (f"o\n1\n{H}\n\n", "extension line 1: expected a non-empty line"),
        (f"o\n1\n{H}\next\n\n", "extension line 2: expected a non-empty line"),
        (f"o\r\n1\r\n{H}\r\n", "control characters"),
        (f"o\x00\n1\n{H}\n", "control characters"),
        (f"o\n1\n{H}\ne\tx\n", "control characters"),
    ],
)
def test_malformed_checkpoints(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(text.encode())


def test_checkpoint_bytes_and_type_errors() -> None:
    with pytest.raises(CheckpointError, match="UTF-8"):
        parse_checkpoint(b"o\xff\n1\n" + H.encode() + b"\n")
    with pytest.raises(CheckpointError, match="expected bytes, got str"):
        parse_checkpoint(f"o\n1\n{H}\n")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"origin": ""}, "origin: expected a non-empty line"),
        ({"origin": "a\nb"}, "origin: expected no control"),
        ({"size": -1}, "0 <= size < 2\\*\\*64, got -1"),
        ({"size": 2**64}, "0 <= size < 2\\*\\*64"),
        ({"size": True}, "expected int, got bool"),
        ({"size": "1"}, "expected int, got str"),
        ({"root_hash": bytes(31)}, "expected 32 bytes, got 31"),
        ({"root_hash": "x" * 32}, "expected bytes, got str"),
        ({"extensions": ("",)}, "extension line 1: expected a non-empty line"),
        ({"extensions": ("a\nb",)}, "extension line 1: expected no control"),
        ({"extensions": "abc"}, "got str"),
    ],
)
def test_checkpoint_constructor_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        _cp(**kw)


# --------------------------------------------------------------------------- cosignatures


def test_cosigner_keys_use_type_0x04() -> None:
    seed = b"\x42" * 32
    w = CosignatureSigner("w.example", seed)
    assert w.key_hash == compute_key_hash("w.example", ALG_COSIGNATURE_V1, w.public_key)
    assert w.key_hash != compute_key_hash("w.example", ALG_ED25519, w.public_key)
    skey, vkey = generate_cosigner("w.example", seed)
    assert (w.signer_key, w.verifier_key) == (skey, vkey)
    assert parse_verifier_key(vkey).alg == ALG_COSIGNATURE_V1
    assert CosignatureSigner.from_key(skey).key_hash == w.key_hash
    v = CosignatureVerifier.from_key(vkey)
    assert (v.name, v.key_hash, v.public_key) == ("w.example", w.key_hash, w.public_key)
    plain = Ed25519Signer("w.example", seed)
    plain_skey, plain_vkey = plain.signer_key, plain.verifier_key
    with pytest.raises(NoteError, match=r"expected signature type 0x04 \(cosignature/v1\)"):
        CosignatureVerifier.from_key(plain_vkey)
    with pytest.raises(NoteError, match="expected signature type 0x04"):
        CosignatureSigner.from_key(plain_skey)
    with pytest.raises(NoteError, match="key name"):
        CosignatureSigner("bad name", seed)
    with pytest.raises(NoteError, match="expected 32 bytes, got 3"):
        CosignatureVerifier("w", b"abc")


def test_cosignature_bytes_layout_and_verification() -> None:
    w = _witness(1)
    body = _cp().to_text()
    sig = w.sign_at(body, 1679315147)
    assert len(sig) == COSIGNATURE_SIZE == 72
    assert sig[:8] == (1679315147).to_bytes(8, "big")
    v = w.verifier()
    assert v.verify_timestamped(body, sig) == 1679315147
    assert v.verify(body, sig)
    # The Ed25519 part signs exactly cosignature_message(body, timestamp).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(w.public_key).verify(
        sig[8:], cosignature_message(body, 1679315147)
    )
    # Changing the timestamp, the body, or the length breaks it.
    assert not v.verify(body, (1679315148).to_bytes(8, "big") + sig[8:])
    assert not v.verify(_cp(size=8).to_text(), sig)
    assert not v.verify(body, sig[:-1])
    assert not v.verify(body, sig[8:])  # a plain 64-byte Ed25519 signature


def test_timestamp_bounds() -> None:
    w = _witness(1)
    body = _cp().to_text()
    assert w.verifier().verify_timestamped(body, w.sign_at(body, MAX_TIMESTAMP)) == MAX_TIMESTAMP
    assert w.verifier().verify_timestamped(body, w.sign_at(body, 0)) == 0
    for bad in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(CheckpointError, match="0 <= timestamp <= 2\\*\\*63-1"):
            w.sign_at(body, bad)
        with pytest.raises(CheckpointError, match="timestamp"):
            w.at(bad)
    # A correctly signed cosignature with a timestamp >= 2**63 is still rejected.
    ts = 1 << 63
    raw = Ed25519PrivateKey.from_private_bytes(bytes([0x11]) * 32).sign(
        b"cosignature/v1\ntime %d\n" % ts + body
    )
    forged = ts.to_bytes(8, "big") + raw
    assert not w.verifier().verify(body, forged)
    with pytest.raises(CheckpointError, match="timestamp <= 2\\*\\*63-1"):
        parse_cosignature(forged)


def test_cosigner_only_signs_checkpoints() -> None:
    with pytest.raises(CheckpointError, match="at least 3 lines"):
        _witness(1).sign_at(b"just a note\n", 1)
    with pytest.raises(CheckpointError, match="root hash"):
        sign_note(b"o\n1\nnot a hash\n", [_witness(1).at(5)])


# --------------------------------------------------------------------------- round trip


def _signed(timestamps: dict[int, int]) -> bytes:
    return sign_note(_cp().to_text(), [_log(), *(_witness(n).at(t) for n, t in timestamps.items())])


def test_log_and_witness_round_trip_with_quorum() -> None:
    w1, w2, w3 = _witness(1), _witness(2), _witness(3)
    msg = _signed({1: 1000, 2: 2000})
    witnesses = [w1.verifier(), w2.verifier(), w3.verifier()]
    vc = open_checkpoint(msg, _log().verifier(), witnesses=witnesses, quorum=2, origin=ORIGIN)
    assert vc.checkpoint == _cp()
    assert vc.log_signature.name == ORIGIN
    assert vc.cosignatures == (
        Cosignature(w1.name, w1.key_hash, 1000),
        Cosignature(w2.name, w2.key_hash, 2000),
    )
    assert len(vc.note.signatures) == 3
    for line in msg.decode().splitlines()[-2:]:
        assert len(base64.b64decode(line.split(" ")[-1])) == 76
    # Quorum not met.
    with pytest.raises(CheckpointError, match="expected at least 3 of 3 witnesses, got 2"):
        open_checkpoint(msg, _log().verifier(), witnesses=witnesses, quorum=3)
    one = _signed({1: 1000})
    with pytest.raises(CheckpointError, match=r"at least 2 of 3 witnesses, got 1 \(witness1"):
        open_checkpoint(one, _log().verifier(), witnesses=witnesses, quorum=2)
    # Unknown cosigners are ignored and do not count.
    extra = add_signatures(one, [CosignatureSigner("stranger", b"\x77" * 32).at(5)])
    with pytest.raises(CheckpointError, match="got 1"):
        open_checkpoint(extra, _log().verifier(), witnesses=witnesses, quorum=2)


def test_witness_cosigns_an_existing_log_checkpoint() -> None:
    log_only = sign_note(_cp().to_text(), [_log()])
    cosigned = add_signatures(log_only, [_witness(1).at(7), _witness(2).at(8)])
    assert cosigned.startswith(log_only)
    vc = open_checkpoint(
        cosigned,
        _log().verifier(),
        witnesses=[_witness(1).verifier(), _witness(2).verifier()],
        quorum=2,
    )
    assert [c.timestamp for c in vc.cosignatures] == [7, 8]


def test_log_signature_is_required() -> None:
    msg = sign_note(_cp().to_text(), [_witness(1).at(1), _witness(2).at(2)])
    witnesses = [_witness(1).verifier(), _witness(2).verifier()]
    with pytest.raises(NoteError, match=r"missing required signature\(s\) from example.com/log\+"):
        open_checkpoint(msg, _log().verifier(), witnesses=witnesses, quorum=1)
    other_log = Ed25519Signer(ORIGIN, b"\x02" * 32)  # same name, other key
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_checkpoint(sign_note(_cp().to_text(), [other_log]), _log().verifier())


def test_invalid_cosignature_from_known_witness_fails_closed() -> None:
    msg = _signed({1: 1000, 2: 2000})
    n = parse_note(msg)
    cos = n.signatures[2]
    bumped = (int.from_bytes(cos.signature[:8], "big") + 1).to_bytes(8, "big")
    tampered = Note(n.text, (*n.signatures[:2], cos._replace(signature=bumped + cos.signature[8:])))
    witnesses = [_witness(1).verifier(), _witness(2).verifier()]
    with pytest.raises(NoteError, match=r"invalid signature from known key witness2.example\+"):
        open_checkpoint(tampered.to_bytes(), _log().verifier(), witnesses=witnesses, quorum=1)
    # Without witness 2 configured, its line is unknown and ignored.
    vc = open_checkpoint(tampered.to_bytes(), _log().verifier(), witnesses=witnesses[:1], quorum=1)
    assert [c.name for c in vc.cosignatures] == ["witness1.example"]


def test_signed_note_that_is_not_a_checkpoint() -> None:
    msg = sign_note(b"hello\n", [_log()])
    with pytest.raises(CheckpointError, match="at least 3 lines"):
        open_checkpoint(msg, _log().verifier())


@pytest.mark.parametrize("quorum", [-1, 3])
def test_quorum_configuration(quorum: int) -> None:
    witnesses = [_witness(1).verifier(), _witness(2).verifier()]
    with pytest.raises(CheckpointError, match=f"0 <= quorum <= 2 .*got {quorum}"):
        open_checkpoint(_signed({1: 1}), _log().verifier(), witnesses=witnesses, quorum=quorum)


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=400, deadline=None)
@given(text=st.binary(max_size=200))
def test_random_bytes_raise_only_checkpoint_error(text: bytes) -> None:
    with contextlib.suppress(CheckpointError):
        parse_checkpoint(text)


_LINE = st.text(st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        _LINE
        | st.integers(-5, 2**65).map(str)
        | st.binary(min_size=30, max_size=34).map(lambda b: base64.b64encode(b).decode())
        | st.just(""),
        max_size=6,
    ),
    end=st.sampled_from(["\n", "", "\r\n"]),
)
def test_structured_garbage_raises_only_checkpoint_error(lines: list[str], end: str) -> None:
    try:
        cp = parse_checkpoint(("\n".join(lines) + end).encode())
    except CheckpointError:
        return
    assert cp.to_text() == ("\n".join(lines) + end).encode()


@settings(max_examples=200, deadline=None)
@given(
    origin=_LINE,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3),
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(cp.to_text()) == cp


@settings(max_examples=200, deadline=None)
@given(msg=st.binary(max_size=300))
def test_open_checkpoint_on_random_bytes(msg: bytes) -> None:
    with contextlib.suppress(NoteError, CheckpointError):
        open_checkpoint(msg, _log().verifier(), witnesses=[_witness(1).verifier()], quorum=1)
