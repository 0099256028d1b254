"""RFC 9474 RSA blind signatures, RSABSSA-SHA384 in its four variants (sans-IO).

The protocol has four steps::

    prepared = prepare(msg, variant)                        # client
    blinded, inv = blind(pk, prepared, variant)             # client
    blind_sig = blind_sign(sk, blinded)                     # server
    sig = finalize(pk, prepared, blind_sig, inv, variant)   # client (verifies the result)
    verify(pk, prepared, sig, variant)                      # anyone

``prepared`` is what gets signed and verified: for the Randomized variants it is a fresh
32-byte prefix followed by the message, for the Deterministic variants the message itself.

The client encodes the message with EMSA-PSS (RFC 8017 section 9.1.1, MGF1-SHA384, written
here) before blinding it, so the salt is chosen by the client and can be injected for test
vectors. Verification is RSASSA-PSS-VERIFY with SHA-384/MGF1-SHA384 and the variant's salt
length, delegated to ``cryptography`` (OpenSSL), which checks the salt length exactly.

The server's private operation (:func:`blind_sign`) uses ``gmpy2.powmod_sec`` (GMP's
side-channel-silent modular exponentiation) on both CRT halves, randomises the base with a
fresh RSA blinding factor so that the (client-chosen) input never meets the secret
exponent directly, and checks ``s^e mod n == m`` before releasing anything (a faulty CRT
half would otherwise leak a factor of ``n``).

Keys are ``cryptography`` RSA keys. :func:`pss_spki` gives the RFC 9578 section 6.5
encoding of a public key (SubjectPublicKeyInfo with the id-RSASSA-PSS algorithm and
SHA-384 / MGF1-SHA384 / saltLength 48 parameters), whose SHA-256 is the Privacy Pass
token type 2 key identifier.
"""

from __future__ import annotations

import enum
import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import gmpy2  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import WireError

__all__ = [
    "BlindRSAError",
    "Variant",
    "SigningKey",
    "HASH_LEN",
    "PREFIX_LEN",
    "prepare",
    "emsa_pss_encode",
    "mgf1_sha384",
    "blind",
    "blind_sign",
    "finalize",
    "verify",
    "generate_private_key",
    "load_public_key_spki",
    "public_key_spki",
    "pss_spki",
    "modulus_len",
]

Rand = Callable[[int], bytes]

HASH_LEN = 48
"""Output length of SHA-384, the hash of every variant here."""

PREFIX_LEN = 32
"""Length of the random message prefix of the Randomized variants (RFC 9474 section 4.1)."""

MIN_MODULUS_BITS = 1024
"""Smallest modulus accepted; RFC 9474 expects at least 2048 in deployment."""

_MAX_RANDOM_TRIES = 128


class BlindRSAError(WireError):
    """A blind RSA operation failed: bad key, malformed input, or a signature that fails."""


class Variant(enum.Enum):
    """The four RFC 9474 section 5 variants of RSABSSA-SHA384."""

    PSS_RANDOMIZED = "RSABSSA-SHA384-PSS-Randomized"
    PSSZERO_RANDOMIZED = "RSABSSA-SHA384-PSSZERO-Randomized"
    PSS_DETERMINISTIC = "RSABSSA-SHA384-PSS-Deterministic"
    PSSZERO_DETERMINISTIC = "RSABSSA-SHA384-PSSZERO-Deterministic"

    @property
    def salt_len(self) -> int:
        """sLen: 48 (the hash length) for PSS, 0 for PSSZERO."""
        return 0 if "PSSZERO" in self.value else HASH_LEN

    @property
    def randomized(self) -> bool:
        """Whether :func:`prepare` adds a random 32-byte prefix to the message."""
        return self.value.endswith("-Randomized")


# --------------------------------------------------------------------------- integers


def _i2osp(x: int, length: int) -> bytes:
    try:
        return x.to_bytes(length, "big")
    except OverflowError as exc:
        raise BlindRSAError(f"integer too large for {length} octets") from exc


def _os2ip(data: bytes) -> int:
    return int.from_bytes(data, "big")


def modulus_len(pk: rsa.RSAPublicKey) -> int:
    """The modulus length in octets (``k`` in RFC 8017), i.e. the length of every signature."""
    return (pk.key_size + 7) // 8


def _random_below(n: int, rand: Rand) -> int:
    """A uniform integer in [1, n) by rejection sampling on ``bit_len(n)`` random bits."""
    bits = n.bit_length()
    nbytes = (bits + 7) // 8
    mask = (1 << bits) - 1
    for _ in range(_MAX_RANDOM_TRIES):
        candidate = _os2ip(rand(nbytes)) & mask
        if 0 < candidate < n:
            return candidate
    raise BlindRSAError("random source did not yield a value in range")


# --------------------------------------------------------------------------- EMSA-PSS


def mgf1_sha384(seed: bytes, length: int) -> bytes:
    """MGF1 (RFC 8017 appendix B.2.1) with SHA-384."""
    if length > (1 << 32) * HASH_LEN:
        raise BlindRSAError("mask too long")
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha384(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) with SHA-384, MGF1-SHA384 and the given salt."""
    em_len = (em_bits + 7) // 8
    s_len = len(salt)
    if em_len < HASH_LEN + s_len + 2:
        raise BlindRSAError("encoding error: modulus too short for this salt length")
    m_hash = hashlib.sha384(msg).digest()
    h = hashlib.sha384(b"\x00" * 8 + m_hash + salt).digest()
    db_len = em_len - HASH_LEN - 1
    db = b"\x00" * (em_len - s_len - HASH_LEN - 2) + b"\x01" + salt
    masked = _os2ip(db) ^ _os2ip(mgf1_sha384(h, db_len))
    # Clear the leftmost 8*emLen - emBits bits of the masked data block.
    masked &= (1 << (8 * db_len - (8 * em_len - em_bits))) - 1
    return masked.to_bytes(db_len, "big") + h + b"\xbc"


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An RSA private key unpacked for the CRT signing path of :func:`blind_sign`.

    Build one with :meth:`from_private_key` once and reuse it to skip the unpacking on
    every signature; :func:`blind_sign` also accepts the ``cryptography`` key directly.
    """

    n: int
    e: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int
    public_key: rsa.RSAPublicKey

    def __repr__(self) -> str:
        return f"SigningKey(bits={self.n.bit_length()}, e={self.e})"

    @classmethod
    def from_private_key(cls, sk: rsa.RSAPrivateKey) -> SigningKey:
        """Unpack ``p, q, dP, dQ, qInv`` from a ``cryptography`` RSA private key."""
        if not isinstance(sk, rsa.RSAPrivateKey):
            raise BlindRSAError(f"expected an RSA private key, got {type(sk).__name__}")
        priv = sk.private_numbers()
        pub = priv.public_numbers
        if pub.n.bit_length() < MIN_MODULUS_BITS:
            raise BlindRSAError(f"RSA modulus of {pub.n.bit_length()} bits is too small")
        if priv.p * priv.q != pub.n or priv.p % 2 == 0 or priv.q % 2 == 0:
            raise BlindRSAError("inconsistent RSA private key")
        return cls(
            n=pub.n,
            e=pub.e,
            p=priv.p,
            q=priv.q,
            dp=priv.dmp1,
            dq=priv.dmq1,
            qinv=priv.iqmp,
            public_key=sk.public_key(),
        )

    @property
    def modulus_len(self) -> int:
        """The modulus length in octets."""
        return (self.n.bit_length() + 7) // 8


def generate_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA private key with public exponent 65537."""
    if bits < MIN_MODULUS_BITS:
        raise BlindRSAError(f"refusing to generate a {bits}-bit RSA key")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


_OID_RSA_ENCRYPTION_ALG = bytes.fromhex("300d06092a864886f70d0101010500")
# AlgorithmIdentifier { id-RSASSA-PSS, RSASSA-PSS-params {
#     hashAlgorithm [0] sha384, maskGenAlgorithm [1] mgf1(sha384), saltLength [2] 48 } }
# exactly as in RFC 9578 section 6.5 (hash AlgorithmIdentifiers without NULL parameters).
_PSS_SHA384_ALG = bytes.fromhex(
    "303d06092a864886f70d01010a3030"
    "a00d300b0609608648016503040202"
    "a11a301806092a864886f70d010108300b0609608648016503040202"
    "a203020130"
)


def _der_len(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def _der_read(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    """Read one DER TLV with the expected tag at ``pos``; returns (value, end)."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise BlindRSAError(f"malformed SubjectPublicKeyInfo: expected DER tag 0x{tag:02x}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nlen = first & 0x7F
        if nlen == 0 or nlen > 4 or pos + nlen > len(data):
            raise BlindRSAError("malformed SubjectPublicKeyInfo: bad DER length")
        length = _os2ip(data[pos : pos + nlen])
        if length < 0x80 or data[pos] == 0:
            raise BlindRSAError("malformed SubjectPublicKeyInfo: non-minimal DER length")
        pos += nlen
    end = pos + length
    if end > len(data):
        raise BlindRSAError("malformed SubjectPublicKeyInfo: truncated")
    return data[pos:end], end


def _check_public_key(pk: object) -> rsa.RSAPublicKey:
    if not isinstance(pk, rsa.RSAPublicKey):
        raise BlindRSAError(f"expected an RSA public key, got {type(pk).__name__}")
    if pk.key_size < MIN_MODULUS_BITS:
        raise BlindRSAError(f"RSA modulus of {pk.key_size} bits is too small")
    return pk


def public_key_spki(pk: rsa.RSAPublicKey) -> bytes:
    """The ordinary DER SubjectPublicKeyInfo (rsaEncryption OID) of ``pk``."""
    _check_public_key(pk)
    return pk.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pss_spki(pk: rsa.RSAPublicKey) -> bytes:
    """The RFC 9578 section 6.5 SPKI of ``pk``: id-RSASSA-PSS, SHA-384, MGF1-SHA384, salt 48."""
    _check_public_key(pk)
    rsa_public_key = pk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    bit_string = _der_tlv(0x03, b"\x00" + rsa_public_key)
    return _der_tlv(0x30, _PSS_SHA384_ALG + bit_string)


def load_public_key_spki(der: bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key from a DER SubjectPublicKeyInfo.

    Accepts the rsaEncryption form and the RFC 9578 id-RSASSA-PSS form (whose parameters
    must be exactly SHA-384 / MGF1-SHA384 / saltLength 48); anything else, including a
    non-canonical encoding or trailing bytes, raises :class:`BlindRSAError`.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise BlindRSAError(f"expected DER bytes, got {type(der).__name__}")
    der = bytes(der)
    body, end = _der_read(der, 0, 0x30)
    if end != len(der):
        raise BlindRSAError("trailing bytes after SubjectPublicKeyInfo")
    _, alg_end = _der_read(body, 0, 0x30)
    algorithm = body[:alg_end]
    bits, bits_end = _der_read(body, alg_end, 0x03)
    if bits_end != len(body):
        raise BlindRSAError("trailing fields in SubjectPublicKeyInfo")
    if algorithm == _PSS_SHA384_ALG:
        canonical = pss_spki
    elif algorithm == _OID_RSA_ENCRYPTION_ALG:
        canonical = public_key_spki
    else:
        raise BlindRSAError(
            "unsupported SubjectPublicKeyInfo algorithm (want rsaEncryption or "
            "id-RSASSA-PSS with SHA-384/MGF1-SHA384/salt 48)"
        )
    if not bits or bits[0] != 0:
        raise BlindRSAError("malformed SubjectPublicKeyInfo: bad BIT STRING")
    plain = _der_tlv(0x30, _OID_RSA_ENCRYPTION_ALG + _der_tlv(0x03, bits))
    try:
        key = serialization.load_der_public_key(plain)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BlindRSAError(f"malformed RSA public key: {exc}") from exc
    pk = _check_public_key(key)
    if canonical(pk) != der:
        raise BlindRSAError("SubjectPublicKeyInfo is not canonically DER-encoded")
    return pk


# --------------------------------------------------------------------------- protocol


def prepare(msg: bytes, variant: Variant, rand: Rand = os.urandom) -> bytes:
    """RFC 9474 section 4.1: prefix 32 random bytes (Randomized variants) or return ``msg``."""
    if not variant.randomized:
        return bytes(msg)
    prefix = rand(PREFIX_LEN)
    if len(prefix) != PREFIX_LEN:
        raise BlindRSAError(f"random source returned {len(prefix)} bytes, wanted {PREFIX_LEN}")
    return prefix + msg


def blind(
    pk: rsa.RSAPublicKey,
    prepared_msg: bytes,
    variant: Variant,
    *,
    r: int | None = None,
    salt: bytes | None = None,
    rand: Rand = os.urandom,
) -> tuple[bytes, int]:
    """RFC 9474 section 4.2 Blind: returns ``(blinded_msg, inv)`` with ``inv = r^-1 mod n``.

    ``r`` (the blinding factor) and ``salt`` (the PSS salt, ``variant.salt_len`` bytes) are
    drawn from ``rand`` unless given; pass them only to reproduce test vectors.
    """
    pk = _check_public_key(pk)
    numbers = pk.public_numbers()
    n, e = numbers.n, numbers.e
    k = modulus_len(pk)
    if salt is None:
        salt = rand(variant.salt_len)
    if len(salt) != variant.salt_len:
        raise BlindRSAError(
            f"{variant.value} needs a {variant.salt_len}-byte salt, got {len(salt)}"
        )
    encoded = emsa_pss_encode(prepared_msg, n.bit_length() - 1, salt)
    m = _os2ip(encoded)
    if gmpy2.gcd(m, n) != 1:
        raise BlindRSAError("invalid input: encoded message is not coprime with the modulus")
    if r is None:
        r = _random_below(n, rand)
    elif not 0 < r < n:
        raise BlindRSAError("blinding factor out of range")
    try:
        inv = int(gmpy2.invert(r, n))
    except ZeroDivisionError as exc:
        raise BlindRSAError("invalid blind: blinding factor is not invertible") from exc
    x = int(gmpy2.powmod(r, e, n))
    z = int(gmpy2.f_mod(gmpy2.mpz(m) * x, n))
    return _i2osp(z, k), inv


def _rsasp1_crt(key: SigningKey, m: int) -> int:
    """RSASP1 by CRT with the exponentiations done by ``gmpy2.powmod_sec``."""
    p, q = gmpy2.mpz(key.p), gmpy2.mpz(key.q)
    s1 = gmpy2.powmod_sec(gmpy2.f_mod(m, p), key.dp, p)
    s2 = gmpy2.powmod_sec(gmpy2.f_mod(m, q), key.dq, q)
    h = gmpy2.f_mod((s1 - s2) * key.qinv, p)
    return int(s2 + h * q)


def blind_sign(sk: rsa.RSAPrivateKey | SigningKey, blinded_msg: bytes) -> bytes:
    """RFC 9474 section 4.3 BlindSign: the server's signature over a blinded message.

    Rejects a message of the wrong length or whose integer is not below ``n``, and checks
    the result against the public key before returning it (fault-attack protection).
    """
    key = sk if isinstance(sk, SigningKey) else SigningKey.from_private_key(sk)
    n, e = key.n, key.e
    k = key.modulus_len
    if len(blinded_msg) != k:
        raise BlindRSAError(f"blinded message must be {k} bytes, got {len(blinded_msg)}")
    m = _os2ip(blinded_msg)
    if m >= n:
        raise BlindRSAError("message representative out of range (blinded message >= n)")
    # Base blinding: sign m * u^e and strip u afterwards, so the exponentiations never run
    # on the client-chosen value itself.
    u = _random_below(n, secrets.token_bytes)
    try:
        u_inv = gmpy2.invert(u, n)
    except ZeroDivisionError as exc:  # u shares a factor with n: astronomically unlikely
        raise BlindRSAError("signing failure: bad blinding factor") from exc
    m_blinded = gmpy2.f_mod(gmpy2.powmod(u, e, n) * m, n)
    s = int(gmpy2.f_mod(_rsasp1_crt(key, m_blinded) * u_inv, n))
    if int(gmpy2.powmod(s, e, n)) != m:
        raise BlindRSAError("signing failure: s^e mod n != m (fault detected, nothing released)")
    return _i2osp(s, k)


def verify(pk: rsa.RSAPublicKey, msg: bytes, sig: bytes, variant: Variant) -> None:
    """RSASSA-PSS-VERIFY of ``sig`` over the prepared message ``msg``; raises if invalid.

    ``msg`` is the output of :func:`prepare` (for the Randomized variants it includes the
    32-byte prefix).
    """
    pk = _check_public_key(pk)
    if len(sig) != modulus_len(pk):
        raise BlindRSAError(f"signature must be {modulus_len(pk)} bytes, got {len(sig)}")
    try:
        pk.verify(
            bytes(sig),
            bytes(msg),
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=variant.salt_len),
            hashes.SHA384(),
        )
    except InvalidSignature as exc:
        raise BlindRSAError(f"invalid {variant.value} signature") from exc


def finalize(
    pk: rsa.RSAPublicKey,
    prepared_msg: bytes,
    blind_sig: bytes,
    inv: int,
    variant: Variant,
) -> bytes:
    """RFC 9474 section 4.4 Finalize: unblind ``blind_sig`` with ``inv`` and verify the result.

    Returns the signature over ``prepared_msg`` only if it verifies under ``pk`` with the
    variant's salt length; raises :class:`BlindRSAError` otherwise.
    """
    pk = _check_public_key(pk)
    n = pk.public_numbers().n
    k = modulus_len(pk)
    if len(blind_sig) != k:
        raise BlindRSAError(f"blind signature must be {k} bytes, got {len(blind_sig)}")
    z = _os2ip(blind_sig)
    if z >= n:
        raise BlindRSAError("blind signature out of range (>= n)")
    if not 0 < inv < n:
        raise BlindRSAError("blind inverse out of range")
    sig = _i2osp(int(gmpy2.f_mod(gmpy2.mpz(z) * inv, n)), k)
    verify(pk, prepared_msg, sig, variant)
    return sig
