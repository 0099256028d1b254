"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, and one or more signature
lines ``— <key name> base64(key ID || signature)`` (U+2014 em dash). This module parses,
formats, signs and verifies them, and handles the Go ``golang.org/x/mod/sumdb/note`` key
strings:

* verifier keys ``<name>+<hash>+base64(alg || public key)``,
* signer keys ``PRIVATE+KEY+<name>+<hash>+base64(alg || 32-byte seed)``,

where ``<hash>`` is the key ID as 8 lowercase hex digits and the key ID is the first four
bytes (big-endian) of ``SHA-256(name || 0x0A || alg || public key)``. Signature type
``0x01`` is a plain Ed25519 note signature; ``0x04`` is a timestamped Ed25519 witness
cosignature (c2sp.org/tlog-cosignature, see :mod:`privproc.wire.checkpoint`). Both use
32-byte Ed25519 public keys, so the key string functions accept either type.

The module is sans-IO: it reads no clock and draws no randomness (Ed25519 signing is
deterministic; key generation takes the 32-byte seed from the caller).

Limits (all enforced when parsing and when signing):

* a whole note is at most :data:`MAX_NOTE_SIZE` bytes (1 MiB);
* a note carries at least one and at most :data:`MAX_SIGNATURES` (100, as Go's
  ``note.Open``) signature lines; C2SP requires accepting at least 16;
* each decoded signature is at least 5 bytes (4-byte key ID plus a non-empty signature);
* base64 must be canonical standard base64 with padding (RFC 4648 section 4; non-zero
  trailing bits are rejected), so every byte of an accepted note is significant;
* the note must be valid UTF-8 with no control character below U+0020 other than newline
  (carriage returns and tabs are rejected);
* key names are non-empty, contain no ``+``, no Unicode whitespace and no control
  characters;
* key hashes in key strings are exactly 8 lowercase hex digits (as Go formats them).

Every failure raises :class:`~privproc.wire.errors.NoteError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privproc.wire.errors import NoteError

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Ed25519Signer",
    "Ed25519Verifier",
    "Note",
    "NoteSignature",
    "Signer",
    "SignerKey",
    "Verifier",
    "VerifierKey",
    "add_signatures",
    "check_key_name",
    "compute_key_hash",
    "ed25519_public_key",
    "format_signer_key",
    "format_verifier_key",
    "generate_signer",
    "open_note",
    "parse_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
]

ALG_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (c2sp.org/signed-note)."""

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature)."""

MAX_NOTE_SIZE = 1 << 20
"""Largest note, in bytes, that is parsed or produced (1 MiB)."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (Go's ``note.Open`` limit)."""

_SUPPORTED_ALGS = {ALG_ED25519: "Ed25519", ALG_COSIGNATURE_V1: "Ed25519 cosignature/v1"}
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_KEY_ID_SIZE = 4
_SIG_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HASH_HEX = re.compile(r"[0-9a-f]{8}")


# --------------------------------------------------------------------------- helpers


def _b64decode(s: str, what: str) -> bytes:
    """Decode canonical standard base64 (with padding), or raise :class:`NoteError`."""
    if not s:
        raise NoteError(f"{what}: expected base64, got an empty string")
    if not s.isascii():
        raise NoteError(f"{what}: expected base64, got non-ASCII characters in {s!r}")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what}: invalid base64 {s!r}: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != s:
        raise NoteError(f"{what}: non-canonical base64 {s!r}")
    return raw


def _b64encode(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def check_key_name(name: str) -> None:
    """Raise :class:`NoteError` unless ``name`` is a valid key name.

    A key name is non-empty, contains no ``+``, no Unicode whitespace and no control
    character, and is encodable as UTF-8.
    """
    if not isinstance(name, str):
        raise NoteError(f"key name: expected str, got {type(name).__name__}")
    if name == "":
        raise NoteError("key name: expected a non-empty name, got ''")
    if "+" in name:
        raise NoteError(f"key name: expected no '+', got {name!r}")
    for ch in name:
        if ch.isspace():
            raise NoteError(f"key name: expected no whitespace, got {ch!r} in {name!r}")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise NoteError(f"key name: expected no control characters, got {ch!r} in {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"key name: expected valid Unicode, got {name!r}") from None


def compute_key_hash(name: str, alg: int, public_key: bytes) -> int:
    """Key ID: first 4 bytes (big-endian) of ``SHA-256(name || 0x0A || alg || public_key)``."""
    check_key_name(name)
    if not 0 <= alg <= 0xFF:
        raise NoteError(f"signature type: expected a byte 0x00..0xff, got {alg}")
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([alg]) + bytes(public_key)
    ).digest()
    return int.from_bytes(digest[:_KEY_ID_SIZE], "big")


def _check_alg(alg: int, what: str) -> None:
    if alg not in _SUPPORTED_ALGS:
        supported = ", ".join(f"0x{a:02x} ({n})" for a, n in _SUPPORTED_ALGS.items())
        raise NoteError(f"{what}: expected signature type {supported}, got 0x{alg:02x}")


def _check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes | bytearray):
        raise NoteError(f"Ed25519 seed: expected bytes, got {type(seed).__name__}")
    if len(seed) != _ED25519_KEY_SIZE:
        raise NoteError(f"Ed25519 seed: expected {_ED25519_KEY_SIZE} bytes, got {len(seed)}")


def _check_public_key(public_key: bytes) -> Ed25519PublicKey:
    if not isinstance(public_key, bytes | bytearray):
        raise NoteError(f"Ed25519 public key: expected bytes, got {type(public_key).__name__}")
    if len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError(
            f"Ed25519 public key: expected {_ED25519_KEY_SIZE} bytes, got {len(public_key)}"
        )
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(public_key))
    except ValueError as exc:
        raise NoteError(f"Ed25519 public key: invalid: {exc}") from None


def ed25519_public_key(seed: bytes) -> bytes:
    """The 32-byte Ed25519 public key of a 32-byte seed (RFC 8032 private key)."""
    _check_seed(seed)
    private = Ed25519PrivateKey.from_private_bytes(bytes(seed))
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --------------------------------------------------------------------------- key strings


@dataclass(frozen=True)
class VerifierKey:
    """A parsed verifier key ``<name>+<hash>+base64(alg || public key)``."""

    name: str
    key_hash: int
    alg: int
    public_key: bytes

    def __str__(self) -> str:
        return f"{self.name}+{self.key_hash:08x}+{_b64encode(bytes([self.alg]) + self.public_key)}"


@dataclass(frozen=True)
class SignerKey:
    """A parsed signer key ``PRIVATE+KEY+<name>+<hash>+base64(alg || seed)``.

    ``key_hash`` is the key ID of the corresponding *public* key.
    """

    name: str
    key_hash: int
    alg: int
    seed: bytes

    def __repr__(self) -> str:  # never print the seed
        return f"SignerKey(name={self.name!r}, key_hash=0x{self.key_hash:08x}, alg={self.alg})"

    def __str__(self) -> str:
        return (
            f"{_PRIVATE_PREFIX}{self.name}+{self.key_hash:08x}+"
            f"{_b64encode(bytes([self.alg]) + self.seed)}"
        )


def _split_key(body: str, what: str) -> tuple[str, int, int, bytes]:
    # The name has no '+', the hash is hex, the base64 key data may contain '+'.
    parts = body.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"{what}: expected <name>+<hash>+<key>, got {len(parts)} field(s)")
    name, hash_hex, key_b64 = parts
    check_key_name(name)
    if not _HASH_HEX.fullmatch(hash_hex):
        raise NoteError(f"{what}: expected key hash of 8 lowercase hex digits, got {hash_hex!r}")
    raw = _b64decode(key_b64, f"{what} key data")
    if len(raw) != 1 + _ED25519_KEY_SIZE:
        if raw:
            _check_alg(raw[0], what)
        raise NoteError(
            f"{what}: expected {1 + _ED25519_KEY_SIZE} bytes of key data "
            f"(type byte + 32-byte key), got {len(raw)}"
        )
    _check_alg(raw[0], what)
    return name, int(hash_hex, 16), raw[0], raw[1:]


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse and check a verifier key string (signature types 0x01 and 0x04)."""
    if not isinstance(vkey, str):
        raise NoteError(f"verifier key: expected str, got {type(vkey).__name__}")
    name, key_hash, alg, public_key = _split_key(vkey, "verifier key")
    _check_public_key(public_key)
    want = compute_key_hash(name, alg, public_key)
    if key_hash != want:
        raise NoteError(
            f"verifier key {name!r}: key hash mismatch: expected {want:08x}, got {key_hash:08x}"
        )
    return VerifierKey(name, key_hash, alg, public_key)


def format_verifier_key(name: str, public_key: bytes, *, alg: int = ALG_ED25519) -> str:
    """Encode ``<name>+<hash>+base64(alg || public_key)``."""
    _check_alg(alg, "verifier key")
    _check_public_key(public_key)
    return str(VerifierKey(name, compute_key_hash(name, alg, public_key), alg, bytes(public_key)))


def parse_signer_key(skey: str) -> SignerKey:
    """Parse and check a signer key string (signature types 0x01 and 0x04)."""
    if not isinstance(skey, str):
        raise NoteError(f"signer key: expected str, got {type(skey).__name__}")
    if not skey.startswith(_PRIVATE_PREFIX):
        raise NoteError(f"signer key: expected prefix {_PRIVATE_PREFIX!r}")
    name, key_hash, alg, seed = _split_key(skey[len(_PRIVATE_PREFIX) :], "signer key")
    want = compute_key_hash(name, alg, ed25519_public_key(seed))
    if key_hash != want:
        raise NoteError(
            f"signer key {name!r}: key hash mismatch: expected {want:08x}, got {key_hash:08x}"
        )
    return SignerKey(name, key_hash, alg, seed)


def format_signer_key(name: str, seed: bytes, *, alg: int = ALG_ED25519) -> str:
    """Encode ``PRIVATE+KEY+<name>+<hash>+base64(alg || seed)``."""
    _check_alg(alg, "signer key")
    public_key = ed25519_public_key(seed)
    return str(SignerKey(name, compute_key_hash(name, alg, public_key), alg, bytes(seed)))


def generate_signer(name: str, seed: bytes, *, alg: int = ALG_ED25519) -> tuple[str, str]:
    """Derive ``(signer_key, verifier_key)`` strings for ``name`` from a 32-byte seed."""
    skey = format_signer_key(name, seed, alg=alg)
    vkey = format_verifier_key(name, ed25519_public_key(seed), alg=alg)
    return skey, vkey


# --------------------------------------------------------------------------- signers


class Verifier(Protocol):
    """Verifies signatures by one key, identified by ``(name, key_hash)``."""

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> int: ...

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (without the 4-byte key ID) is a valid signature of ``msg``."""
        ...


class Signer(Protocol):
    """Signs note texts with one key, identified by ``(name, key_hash)``."""

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> int: ...

    def sign(self, msg: bytes) -> bytes:
        """The signature of ``msg`` (without the 4-byte key ID)."""
        ...


class Ed25519KeyVerifier:
    """The Ed25519 public key shared by note verifiers; ``ALG`` picks the signature type.

    Subclasses add how a signature of their type is checked.
    """

    ALG = ALG_ED25519
    ALG_LABEL = "Ed25519"

    __slots__ = ("_key", "_key_hash", "_name", "_public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        self._key = _check_public_key(public_key)
        self._key_hash = compute_key_hash(name, self.ALG, public_key)
        self._name = name
        self._public_key = bytes(public_key)

    @classmethod
    def from_key(cls, vkey: str) -> Self:
        """Build from a verifier key string of this signature type."""
        key = parse_verifier_key(vkey)
        if key.alg != cls.ALG:
            raise NoteError(
                f"verifier key {key.name!r}: expected signature type 0x{cls.ALG:02x} "
                f"({cls.ALG_LABEL}), got 0x{key.alg:02x}"
            )
        return cls(key.name, key.public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_hash(self) -> int:
        return self._key_hash

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def verifier_key(self) -> str:
        return format_verifier_key(self._name, self._public_key, alg=self.ALG)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Ed25519KeyVerifier)
        return (self._name, self._public_key) == (other._name, other._public_key)

    def __hash__(self) -> int:
        return hash((type(self), self._name, self._public_key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, key_hash=0x{self._key_hash:08x})"


class Ed25519Verifier(Ed25519KeyVerifier):
    """Verifier of plain Ed25519 note signatures (signature type 0x01)."""

    __slots__ = ()

    def verify(self, msg: bytes, sig: bytes) -> bool:
        if len(sig) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(bytes(sig), bytes(msg))
        except InvalidSignature:
            return False
        return True


class Ed25519KeySigner:
    """The Ed25519 key material shared by note signers; ``ALG`` picks the signature type.

    Subclasses add how they sign (plain note signatures, or timestamped cosignatures).
    """

    ALG = ALG_ED25519
    ALG_LABEL = "Ed25519"

    __slots__ = ("_key", "_key_hash", "_name", "_public_key", "_seed")

    def __init__(self, name: str, seed: bytes) -> None:
        self._public_key = ed25519_public_key(seed)
        self._key_hash = compute_key_hash(name, self.ALG, self._public_key)
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self._name = name
        self._seed = bytes(seed)

    @classmethod
    def from_key(cls, skey: str) -> Self:
        """Build from a ``PRIVATE+KEY+...`` signer key string of this signature type."""
        key = parse_signer_key(skey)
        if key.alg != cls.ALG:
            raise NoteError(
                f"signer key {key.name!r}: expected signature type 0x{cls.ALG:02x} "
                f"({cls.ALG_LABEL}), got 0x{key.alg:02x}"
            )
        return cls(key.name, key.seed)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_hash(self) -> int:
        return self._key_hash

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def verifier_key(self) -> str:
        return format_verifier_key(self._name, self._public_key, alg=self.ALG)

    @property
    def signer_key(self) -> str:
        return format_signer_key(self._name, self._seed, alg=self.ALG)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, key_hash=0x{self._key_hash:08x})"


class Ed25519Signer(Ed25519KeySigner):
    """Signer of plain Ed25519 note signatures (signature type 0x01)."""

    __slots__ = ()

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self._name, self._public_key)

    def sign(self, msg: bytes) -> bytes:
        return self._key.sign(bytes(msg))


# --------------------------------------------------------------------------- notes


class NoteSignature(NamedTuple):
    """One signature line: key name, key ID, and signature bytes (after the key ID)."""

    name: str
    key_hash: int
    signature: bytes

    def to_line(self) -> str:
        """The signature line, including the final newline."""
        blob = self.key_hash.to_bytes(_KEY_ID_SIZE, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {_b64encode(blob)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: the text (with its final newline) and its signature lines.

    The signatures of a note returned by :func:`parse_note` are *unverified*; use
    :func:`open_note` before trusting the text.
    """

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return self.text + b"\n" + "".join(s.to_line() for s in self.signatures).encode("utf-8")


def _check_text(text: bytes | str) -> tuple[bytes, str]:
    if isinstance(text, str):
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise NoteError("note text: expected valid Unicode, got lone surrogates") from None
        s = text
    elif isinstance(text, bytes | bytearray):
        raw = bytes(text)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(
                f"note text: expected UTF-8, got {exc.reason} at byte {exc.start}"
            ) from None
    else:
        raise NoteError(f"note text: expected bytes or str, got {type(text).__name__}")
    if not s.endswith("\n"):
        raise NoteError("note text: expected a final newline, got none")
    bad = _CONTROL.search(s)
    if bad:
        raise NoteError(
            f"note text: expected no control characters but newline, got {bad.group()!r}"
        )
    return raw, s


def _make_lines(text: bytes, signers: Iterable[Signer], seen: set[tuple[str, int]]) -> str:
    lines = []
    for signer in signers:
        check_key_name(signer.name)
        ident = (signer.name, signer.key_hash)
        if ident in seen:
            raise NoteError(f"duplicate signer {signer.name}+{signer.key_hash:08x}")
        seen.add(ident)
        sig = bytes(signer.sign(text))
        if not sig:
            raise NoteError(f"signer {signer.name}+{signer.key_hash:08x} returned no signature")
        lines.append(NoteSignature(signer.name, signer.key_hash, sig).to_line())
    return "".join(lines)


def _finish(msg: bytes, count: int) -> bytes:
    if count == 0:
        raise NoteError("expected at least one signer, got none")
    if count > MAX_SIGNATURES:
        raise NoteError(f"expected at most {MAX_SIGNATURES} signatures, got {count}")
    if len(msg) > MAX_NOTE_SIZE:
        raise NoteError(f"signed note: expected at most {MAX_NOTE_SIZE} bytes, got {len(msg)}")
    return msg


def sign_note(text: bytes | str, signers: Iterable[Signer]) -> bytes:
    """Sign ``text`` (which must end in a newline) with each signer, in order."""
    raw, _ = _check_text(text)
    signers = list(signers)
    lines = _make_lines(raw, signers, set())
    return _finish(raw + b"\n" + lines.encode("utf-8"), len(signers))


def add_signatures(msg: bytes, signers: Iterable[Signer]) -> bytes:
    """Append signature lines by ``signers`` to an existing signed note (e.g. cosigning).

    The existing signatures are kept byte for byte and are *not* verified here.
    """
    note = parse_note(msg)
    signers = list(signers)
    seen = {(s.name, s.key_hash) for s in note.signatures}
    lines = _make_lines(note.text, signers, seen)
    return _finish(bytes(msg) + lines.encode("utf-8"), len(note.signatures) + len(signers))


def parse_note(msg: bytes) -> Note:
    """Parse a signed note without verifying anything. Raises :class:`NoteError`."""
    if not isinstance(msg, bytes | bytearray):
        raise NoteError(f"signed note: expected bytes, got {type(msg).__name__}")
    msg = bytes(msg)
    if len(msg) > MAX_NOTE_SIZE:
        raise NoteError(f"signed note: expected at most {MAX_NOTE_SIZE} bytes, got {len(msg)}")
    try:
        s = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(
            f"signed note: expected UTF-8, got {exc.reason} at byte {exc.start}"
        ) from None
    bad = _CONTROL.search(s)
    if bad:
        raise NoteError(
            f"signed note: expected no control characters but newline, got {bad.group()!r} "
            f"at character {bad.start()}"
        )
    split = s.rfind("\n\n")
    if split < 0:
        raise NoteError("signed note: expected a blank line before the signatures, got none")
    text, sig_block = s[: split + 1], s[split + 2 :]
    if not sig_block:
        raise NoteError("signed note: expected at least one signature line, got none")
    if not sig_block.endswith("\n"):
        raise NoteError("signed note: expected a final newline after the last signature")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(
            f"signed note: expected at most {MAX_SIGNATURES} signatures, got {len(lines)}"
        )
    sigs = []
    for i, line in enumerate(lines, 1):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(
                f"signature line {i}: expected to start with '\u2014 ' (U+2014, space), "
                f"got {line[:2]!r}"
            )
        fields = line[len(_SIG_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise NoteError(
                f"signature line {i}: expected '<name> <base64>' (one space), "
                f"got {len(fields)} space-separated fields"
            )
        name, b64 = fields
        try:
            check_key_name(name)
        except NoteError as exc:
            raise NoteError(f"signature line {i}: {exc}") from None
        blob = _b64decode(b64, f"signature line {i}")
        if len(blob) <= _KEY_ID_SIZE:
            raise NoteError(
                f"signature line {i}: expected more than {_KEY_ID_SIZE} bytes "
                f"(key ID + signature), got {len(blob)}"
            )
        key_hash = int.from_bytes(blob[:_KEY_ID_SIZE], "big")
        sigs.append(NoteSignature(name, key_hash, blob[_KEY_ID_SIZE:]))
    return Note(text.encode("utf-8"), tuple(sigs))


def open_note(
    msg: bytes,
    verifiers: Iterable[Verifier],
    *,
    required: Iterable[Verifier] = (),
) -> tuple[Note, tuple[NoteSignature, ...]]:
    """Parse ``msg`` and verify its signatures against the known ``verifiers``.

    Signature lines whose ``(name, key_hash)`` match no known verifier are ignored (kept in
    ``Note.signatures``). Every line from a known key is verified, and one that fails makes
    the whole note invalid (fail closed). The note is rejected unless at least one known
    key signed it and every verifier in ``required`` (also treated as known) signed it.

    Returns the note and its verified signatures, in note order, one per key.
    """
    required = tuple(required)
    known: dict[tuple[str, int], Verifier] = {}
    for v in (*verifiers, *required):
        ident = (v.name, v.key_hash)
        other = known.get(ident)
        if other is not None and other is not v and other != v:
            raise NoteError(
                f"ambiguous verifiers: two different keys named {v.name}+{v.key_hash:08x}"
            )
        known.setdefault(ident, v)
    required_ids = [(v.name, v.key_hash) for v in required]
    if not known:
        raise NoteError("expected at least one known verifier, got none")

    note = parse_note(msg)
    verified: dict[tuple[str, int], NoteSignature] = {}
    for sig in note.signatures:
        ident = (sig.name, sig.key_hash)
        verifier = known.get(ident)
        if verifier is None:
            continue
        if not verifier.verify(note.text, sig.signature):
            raise NoteError(f"invalid signature from known key {sig.name}+{sig.key_hash:08x}")
        verified.setdefault(ident, sig)

    if not verified:
        found = ", ".join(f"{s.name}+{s.key_hash:08x}" for s in note.signatures)
        raise NoteError(f"no signature from a known key (found: {found})")
    missing = [f"{n}+{h:08x}" for n, h in required_ids if (n, h) not in verified]
    if missing:
        raise NoteError(f"missing required signature(s) from {', '.join(missing)}")
    return note, tuple(verified.values())
