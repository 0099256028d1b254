"""C2SP signed notes: published vectors, key strings, parsing, signing and opening."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproc.wire import note
from privproc.wire.errors import NoteError
from privproc.wire.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Ed25519Signer,
    Ed25519Verifier,
    Note,
    NoteSignature,
    add_signatures,
    compute_key_hash,
    format_signer_key,
    format_verifier_key,
    generate_signer,
    open_note,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)

VECTORS = Path(__file__).parent.parent / "vectors" / "notes"
VERIFIABLE = [
    "c2sp-signed-note-example",
    "golang-x-mod-peterneumann",
    "sum.golang.org-checkpoint-6476701",
]
EXPECTED_TEXT = {
    "c2sp-signed-note-example": b"This is an example message.\n",
    "golang-x-mod-peterneumann": (
        b"If you think cryptography is the answer to your problem,\n"
        b"then you don't know what your problem is.\n"
    ),
    "sum.golang.org-checkpoint-6476701": (
        b"go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
    ),
}
EXPECTED_KEY = {
    "c2sp-signed-note-example": ("example.com/foo", 0x530D903A),
    "golang-x-mod-peterneumann": ("PeterNeumann", 0xC74F20A3),
    "sum.golang.org-checkpoint-6476701": ("sum.golang.org", 0x033DE0AE),
}
# The signer key published next to the verifier key in golang.org/x/mod/sumdb/note's docs.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
EM = "\u2014"


def _note(name: str) -> bytes:
    return (VECTORS / f"{name}.note").read_bytes()


def _vkey(name: str) -> str:
    return (VECTORS / f"{name}.vkey").read_text(encoding="utf-8").strip()


def _verifier(name: str) -> Ed25519Verifier:
    return Ed25519Verifier.from_key(_vkey(name))


def _signer(name: str, n: int) -> Ed25519Signer:
    return Ed25519Signer(name, bytes([n]) * 32)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("name", VERIFIABLE)
def test_published_vectors_verify(name: str) -> None:
    v = _verifier(name)
    assert (v.name, v.key_hash) == EXPECTED_KEY[name]
    n, verified = open_note(_note(name), [v])
    assert n.text == EXPECTED_TEXT[name]
    assert len(n.signatures) == 1
    assert verified == n.signatures
    assert (verified[0].name, verified[0].key_hash) == EXPECTED_KEY[name]
    assert len(verified[0].signature) == 64
    assert n.to_bytes() == _note(name)


@pytest.mark.parametrize("name", VERIFIABLE)
def test_published_vkeys_round_trip(name: str) -> None:
    key = parse_verifier_key(_vkey(name))
    assert key.alg == ALG_ED25519
    assert str(key) == _vkey(name)
    assert format_verifier_key(key.name, key.public_key) == _vkey(name)
    assert _verifier(name).verifier_key == _vkey(name)


def test_sum_golang_org_vkey_base64_contains_plus() -> None:
    # The key data contains '+': only the first two '+' separate fields.
    assert _vkey("sum.golang.org-checkpoint-6476701").count("+") == 4
    assert parse_verifier_key(_vkey("sum.golang.org-checkpoint-6476701")).name == "sum.golang.org"


def test_go_signer_key_reproduces_the_go_example_byte_for_byte() -> None:
    key = parse_signer_key(PETER_SKEY)
    assert (key.name, key.key_hash, key.alg) == ("PeterNeumann", 0xC74F20A3, ALG_ED25519)
    assert str(key) == PETER_SKEY
    assert "seed" not in repr(key)  # the seed is not printed
    signer = Ed25519Signer.from_key(PETER_SKEY)
    assert signer.signer_key == PETER_SKEY
    assert signer.verifier_key == _vkey("golang-x-mod-peterneumann")
    msg = sign_note(EXPECTED_TEXT["golang-x-mod-peterneumann"], [signer])
    assert msg == _note("golang-x-mod-peterneumann")  # Ed25519 is deterministic


def test_vectors_with_wrong_key_fail() -> None:
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(_note("c2sp-signed-note-example"), [_verifier("golang-x-mod-peterneumann")])


# --------------------------------------------------------------------------- tampering


def _must_fail(msg: bytes, verifier: Ed25519Verifier) -> None:
    try:
        open_note(msg, [verifier])
    except NoteError:
        return
    raise AssertionError(f"tampered note verified: {msg!r}")


@pytest.mark.parametrize("name", VERIFIABLE)
def test_every_bit_flip_and_deletion_fails(name: str) -> None:
    original = _note(name)
    v = _verifier(name)
    for i in range(len(original)):
        for mask in (0x01, 0x02, 0x20, 0x80):
            mutated = bytearray(original)
            mutated[i] ^= mask
            _must_fail(bytes(mutated), v)
        _must_fail(original[:i] + original[i + 1 :], v)


@pytest.mark.parametrize("name", VERIFIABLE)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_changed_byte_fails(name: str, data: st.DataObject) -> None:
    original = _note(name)
    i = data.draw(st.integers(0, len(original) - 1), label="position")
    b = data.draw(st.integers(0, 255).filter(lambda x: x != original[i]), label="byte")
    mutated = bytearray(original)
    mutated[i] = b
    _must_fail(bytes(mutated), _verifier(name))


@pytest.mark.parametrize("name", VERIFIABLE)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_inserted_byte_fails(name: str, data: st.DataObject) -> None:
    original = _note(name)
    i = data.draw(st.integers(0, len(original)), label="position")
    b = data.draw(st.integers(0, 255), label="byte")
    _must_fail(original[:i] + bytes([b]) + original[i:], _verifier(name))


def test_non_canonical_base64_signature_is_rejected() -> None:
    # 68 bytes -> 92 chars ending in 'M='; 'N' differs only in the two unused trailing bits.
    original = _note("c2sp-signed-note-example")
    assert original.endswith(b"M=\n")
    mutated = original[:-3] + b"N=\n"
    assert base64.b64decode(mutated.split(b" ")[-1]) == base64.b64decode(original.split(b" ")[-1])
    with pytest.raises(NoteError, match="non-canonical base64"):
        parse_note(mutated)


# --------------------------------------------------------------------------- key strings


def test_generate_signer_from_seed() -> None:
    seed = bytes(range(32))
    skey, vkey = generate_signer("example.com/log", seed)
    assert skey.startswith("PRIVATE+KEY+example.com/log+")
    sk, vk = parse_signer_key(skey), parse_verifier_key(vkey)
    assert sk.seed == seed
    assert sk.key_hash == vk.key_hash
    assert vk.key_hash == compute_key_hash("example.com/log", ALG_ED25519, vk.public_key)
    assert vk.public_key == note.ed25519_public_key(seed)
    signer = Ed25519Signer.from_key(skey)
    assert signer.verifier_key == vkey
    assert signer.verifier().verify(b"hi\n", signer.sign(b"hi\n"))
    assert generate_signer("example.com/log", seed) == (skey, vkey)  # deterministic
    assert format_signer_key("example.com/log", seed) == skey


def test_key_hash_definition() -> None:
    import hashlib

    pub = note.ed25519_public_key(bytes(32))
    digest = hashlib.sha256(b"name\n\x01" + pub).digest()
    assert compute_key_hash("name", ALG_ED25519, pub) == int.from_bytes(digest[:4], "big")
    assert compute_key_hash("name", ALG_COSIGNATURE_V1, pub) != compute_key_hash(
        "name", ALG_ED25519, pub
    )


def _mangled(key: str) -> list[str]:
    b = key.encode()
    out = {b[i:j].decode(errors="replace") for i in range(len(b) + 1) for j in range(i, len(b) + 1)}
    for i in range(len(b)):
        m = bytearray(b)
        m[i] = (m[i] + 1) % 256
        out.add(m.decode(errors="replace"))
    out.discard(key)
    return sorted(out)


def test_mangled_verifier_keys_are_rejected() -> None:
    vkey = _vkey("golang-x-mod-peterneumann")
    for bad in _mangled(vkey):
        with pytest.raises(NoteError):
            parse_verifier_key(bad)


def test_mangled_signer_keys_are_rejected() -> None:
    for bad in _mangled(PETER_SKEY):
        with pytest.raises(NoteError):
            parse_signer_key(bad)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "key hash mismatch: expected c74f20a3, got c74f20a4",
        ),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        # wrong-length key data / unknown algorithm (the Go test's manglings)
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "non-canonical base64",
        ),
        ("n+00000000+" + _b64(b"\x01" + bytes(33)), "expected 33 bytes .* got 34"),
        ("n+00000000+" + _b64(b"\x01" + bytes(31)), "expected 33 bytes .* got 32"),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "got 0x65",
        ),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "whitespace"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "non-empty"),
        ("PeterNeumann+c74f20a3", "got 2 field"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n", "base64"),
    ],
)
def test_bad_verifier_keys(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        parse_verifier_key(vkey)


def test_verifier_and_signer_key_type_checks() -> None:
    seed = bytes(32)
    _, cosig_vkey = generate_signer("w", seed, alg=ALG_COSIGNATURE_V1)
    cosig_skey, _ = generate_signer("w", seed, alg=ALG_COSIGNATURE_V1)
    assert parse_verifier_key(cosig_vkey).alg == ALG_COSIGNATURE_V1
    with pytest.raises(NoteError, match=r"expected signature type 0x01 \(Ed25519\), got 0x04"):
        Ed25519Verifier.from_key(cosig_vkey)
    with pytest.raises(NoteError, match="got 0x04"):
        Ed25519Signer.from_key(cosig_skey)
    with pytest.raises(NoteError, match="expected prefix"):
        parse_signer_key(_vkey("golang-x-mod-peterneumann"))
    with pytest.raises(NoteError, match="signature type"):
        format_verifier_key("w", bytes(32), alg=0x02)
    with pytest.raises(NoteError, match="key hash mismatch"):
        parse_signer_key(PETER_SKEY.replace("c74f20a3", "c74f20a2"))


@pytest.mark.parametrize(
    "name", ["", "a+b", "a b", "a\tb", "a\nb", "a\u00a0b", "a\u2003b", "a\x00b", "a\x7fb", "\ud800"]
)
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        generate_signer(name, bytes(32))
    with pytest.raises(NoteError, match="key name"):
        Ed25519Signer(name, bytes(32))


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_bad_seed_lengths(seed: bytes) -> None:
    with pytest.raises(NoteError, match=f"expected 32 bytes, got {len(seed)}"):
        Ed25519Signer("a", seed)


def test_bad_public_key_length() -> None:
    with pytest.raises(NoteError, match="expected 32 bytes, got 31"):
        Ed25519Verifier("a", bytes(31))


# --------------------------------------------------------------------------- parsing


SIG = f"{EM} a " + _b64(b"\x00\x00\x00\x01" + bytes(64)) + "\n"


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        ("text\n" + SIG, "blank line"),
        ("text\n\n", "at least one signature line"),
        ("text\n\n" + SIG[:-1], "final newline"),
        ("text\n\n" + SIG + "\n", "at least one signature line"),
        ("text\n\n" + SIG.replace(EM, "-"), "start with"),
        ("text\n\n" + SIG.replace(EM + " ", EM), "start with"),
        ("text\n\n" + SIG.replace(" a ", " a  "), "one space"),
        ("text\n\n" + SIG.replace(" a ", " "), "one space"),
        ("text\n\n" + SIG.replace(" a ", " a+b "), "key name"),
        ("text\n\n" + f"{EM} a AAAAAQ==\n", "more than 4 bytes"),
        ("text\n\n" + f"{EM} a AAAAAQA\n", "base64"),
        ("text\n\n" + f"{EM} a AAAA_QA=\n", "base64"),
        ("text\n\n" + f"{EM} a \n", "empty string"),
        ("te\rxt\n\n" + SIG, "control characters"),
        ("te\txt\n\n" + SIG, "control characters"),
        ("text\n\n" + SIG.replace("\n", "\r\n"), "control characters"),
        ("\n" + SIG, "blank line"),
        ("", "blank line"),
    ],
)
def test_malformed_notes(msg: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        parse_note(msg.encode())


def test_invalid_utf8_and_types() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        parse_note(b"te\xffxt\n\n" + SIG.encode())
    with pytest.raises(NoteError, match="expected bytes, got str"):
        parse_note("text\n\n" + SIG)  # type: ignore[arg-type]


def test_parse_keeps_every_line_in_order_and_text_may_have_blank_lines() -> None:
    text = "a\n\nb\n\n"
    sig2 = f"{EM} b " + _b64(b"\xff\xff\xff\xff" + b"x") + "\n"
    n = parse_note((text + "\n" + SIG + sig2 + SIG).encode())
    assert n.text == text.encode()
    assert [s.name for s in n.signatures] == ["a", "b", "a"]
    assert n.signatures[1] == NoteSignature("b", 0xFFFFFFFF, b"x")
    assert n.signatures[1].to_line() == sig2


def test_signature_count_limit() -> None:
    ok = ("t\n\n" + SIG * MAX_SIGNATURES).encode()
    assert len(parse_note(ok).signatures) == MAX_SIGNATURES
    with pytest.raises(NoteError, match=f"at most {MAX_SIGNATURES} signatures, got 101"):
        parse_note(ok + SIG.encode())


def test_note_size_limit() -> None:
    pad = "x" * (MAX_NOTE_SIZE - len(SIG.encode()) - 1) + "\n"
    msg = (pad + "\n" + SIG).encode()
    assert len(msg) == MAX_NOTE_SIZE + 1
    with pytest.raises(NoteError, match=f"at most {MAX_NOTE_SIZE} bytes"):
        parse_note(msg)
    assert parse_note(msg[1:]).text == pad[1:].encode()


# --------------------------------------------------------------------------- signing / opening


def test_sign_and_open_with_several_keys() -> None:
    a, b, c = _signer("a.example/log", 1), _signer("b.example", 2), _signer("c.example", 3)
    text = "hello\n\nworld, \u00e9\u2014\n"
    msg = sign_note(text, [a, b, c])
    n, verified = open_note(msg, [b.verifier(), a.verifier()])
    assert n.text == text.encode()
    assert [s.name for s in verified] == ["a.example/log", "b.example"]  # note order
    assert len(n.signatures) == 3
    # Requiring a key that signed works; requiring one that did not fails.
    open_note(msg, [b.verifier()], required=[a.verifier()])
    d = _signer("d.example", 4)
    with pytest.raises(NoteError, match=r"missing required signature\(s\) from d.example\+"):
        open_note(msg, [a.verifier()], required=[d.verifier()])


def test_unknown_signatures_are_ignored_including_name_or_hash_collisions() -> None:
    a = _signer("a", 1)
    impostor_same_name = _signer("a", 2)  # same name, other key -> other hash
    msg = sign_note(b"t\n", [impostor_same_name, a])
    _, verified = open_note(msg, [a.verifier()])
    assert [s.key_hash for s in verified] == [a.key_hash]
    # Same key hash but another name: unknown, ignored.
    n = parse_note(msg)
    renamed = Note(n.text, (n.signatures[1]._replace(name="b"), n.signatures[1])).to_bytes()
    _, verified = open_note(renamed, [a.verifier()])
    assert [s.name for s in verified] == ["a"]


def test_invalid_signature_from_known_key_fails_closed() -> None:
    a, b = _signer("a", 1), _signer("b", 2)
    msg = sign_note(b"t\n", [a, b])
    n = parse_note(msg)
    bad_b = n.signatures[1]._replace(signature=bytes(64))
    tampered = Note(n.text, (n.signatures[0], bad_b)).to_bytes()
    open_note(tampered, [a.verifier()])  # b unknown: fine
    with pytest.raises(NoteError, match=r"invalid signature from known key b\+"):
        open_note(tampered, [a.verifier(), b.verifier()])
    # A duplicate line from a known key is verified too.
    dup = Note(n.text, (n.signatures[0], n.signatures[0]._replace(signature=bytes(64))))
    with pytest.raises(NoteError, match=r"invalid signature from known key a\+"):
        open_note(dup.to_bytes(), [a.verifier()])
    # Wrong-length signature from a known key.
    short = Note(n.text, (n.signatures[0]._replace(signature=b"x"),))
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(short.to_bytes(), [a.verifier()])


def test_duplicate_valid_lines_are_reported_once() -> None:
    a = _signer("a", 1)
    n = parse_note(sign_note(b"t\n", [a]))
    twice = Note(n.text, n.signatures * 2).to_bytes()
    _, verified = open_note(twice, [a.verifier()])
    assert len(verified) == 1


def test_open_note_configuration_errors() -> None:
    a = _signer("a", 1)
    msg = sign_note(b"t\n", [a])
    with pytest.raises(NoteError, match="at least one known verifier"):
        open_note(msg, [])
    # Two different keys with the same name and key hash cannot be told apart.
    # (Real key hashes differ; force a collision with a stub verifier.)
    twin = Ed25519Verifier("a", note.ed25519_public_key(bytes([9]) * 32))

    class Stub:
        name = "a"
        key_hash = a.key_hash

        def verify(self, msg: bytes, sig: bytes) -> bool:
            return True

    assert twin != a.verifier()
    with pytest.raises(NoteError, match="ambiguous verifiers: two different keys named a"):
        open_note(msg, [a.verifier(), Stub()])
    # The same key given twice, as equal objects or the same object, is fine.
    v = a.verifier()
    assert v == a.verifier()
    assert hash(v) == hash(a.verifier())
    open_note(msg, [v, a.verifier()], required=[a.verifier()])
    open_note(msg, [v, v], required=[v])


def test_required_may_be_a_generator() -> None:
    a, b = _signer("a", 1), _signer("b", 2)
    msg = sign_note(b"t\n", [a])
    with pytest.raises(NoteError, match=r"missing required signature\(s\) from b\+"):
        open_note(msg, [a.verifier()], required=(v for v in [b.verifier()]))


def test_sign_note_rejections() -> None:
    a = _signer("a", 1)
    with pytest.raises(NoteError, match="final newline"):
        sign_note(b"no newline", [a])
    with pytest.raises(NoteError, match="final newline"):
        sign_note(b"", [a])
    with pytest.raises(NoteError, match="control characters"):
        sign_note(b"a\rb\n", [a])
    with pytest.raises(NoteError, match="UTF-8"):
        sign_note(b"\xc3\n", [a])
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(b"t\n", [])
    with pytest.raises(NoteError, match="duplicate signer"):
        sign_note(b"t\n", [a, _signer("a", 1)])
    with pytest.raises(NoteError, match=f"at most {MAX_NOTE_SIZE} bytes"):
        sign_note(b"x" * MAX_NOTE_SIZE + b"\n", [a])
    many = [_signer(f"k{i}", 1) for i in range(MAX_SIGNATURES + 1)]
    with pytest.raises(NoteError, match=f"at most {MAX_SIGNATURES} signatures"):
        sign_note(b"t\n", many)


def test_add_signatures() -> None:
    a, b = _signer("a", 1), _signer("b", 2)
    msg = sign_note(b"t\n", [a])
    both = add_signatures(msg, [b])
    assert both == sign_note(b"t\n", [a, b])
    with pytest.raises(NoteError, match="duplicate signer"):
        add_signatures(both, [a])


_TEXT_CHARS = st.characters(min_codepoint=0x20, codec="utf-8") | st.just("\n")


@settings(max_examples=100, deadline=None)
@given(text=st.text(_TEXT_CHARS, max_size=200), seed=st.binary(min_size=32, max_size=32))
def test_sign_open_round_trip(text: str, seed: bytes) -> None:
    signer = Ed25519Signer("example.com/k", seed)
    msg = sign_note(text + "\n", [signer])
    n, verified = open_note(msg, [signer.verifier()])
    assert n.text == (text + "\n").encode()
    assert verified == n.signatures


@settings(max_examples=400, deadline=None)
@given(msg=st.binary(max_size=300))
def test_random_bytes_raise_only_note_error(msg: bytes) -> None:
    try:
        parse_note(msg)
        open_note(msg, [_verifier("c2sp-signed-note-example")])
    except NoteError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(_TEXT_CHARS, max_size=40),
    lines=st.lists(
        st.tuples(
            st.sampled_from([EM + " ", EM, "- ", ""]),
            st.text(st.characters(min_codepoint=0x20, codec="utf-8"), max_size=8),
            st.sampled_from([" ", "  ", ""]),
            st.binary(max_size=70).map(_b64) | st.text(max_size=10),
        ),
        max_size=4,
    ),
)
def test_structured_garbage_raises_only_note_error(
    text: str, lines: list[tuple[str, str, str, str]]
) -> None:
    body = "".join(p + n + s + b + "\n" for p, n, s, b in lines)
    raw = (text + "\n\n" + body).encode("utf-8", errors="surrogatepass")
    try:
        parse_note(raw)
        open_note(raw, [_verifier("c2sp-signed-note-example")])
    except NoteError:
        pass


@settings(max_examples=200, deadline=None)
@given(vkey=st.text(max_size=80))
def test_random_key_strings_raise_only_note_error(vkey: str) -> None:
    for fn in (parse_verifier_key, parse_signer_key):
        with contextlib.suppress(NoteError):
            fn(vkey)
