"""A slow, test-only reference of RFC 9497 VOPRF(P-384, SHA-384), written from the RFCs.

It exists because the ``voprf`` package (the production backend) takes neither a raw
secret scalar, nor an injected blind, nor injected proof randomness, so it cannot replay
the RFC 9497 / RFC 9578 vectors by itself. This module can: it is checked byte for byte
against the RFC 9497 P384-SHA384 VOPRF vectors (key derivation, blinded element,
evaluation, proof with the given randomness, output), then used to check the RFC 9578
type 0x0001 vectors and to cross-check the package's messages.

Not constant time and not for production: plain affine/Jacobian arithmetic on Python ints.
Pieces: hash_to_curve P384_XMD:SHA-384_SSWU_RO_ (RFC 9380), HashToScalar (hash_to_field
into the group order), DeriveKeyPair, Blind, BlindEvaluate with GenerateProof,
VerifyProof, Finalize and Evaluate (RFC 9497 sections 3.2-3.3, 2.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# P-384 (SEC 2 / FIPS 186-4)
P = 2**384 - 2**128 - 2**96 + 2**32 - 1
A = P - 3
B = int(
    "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
    "c656398d8a2ed19d2a85c8edd3ec2aef",
    16,
)
N = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973",
    16,
)
GX = int(
    "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38"
    "5502f25dbf55296c3a545e3872760ab7",
    16,
)
GY = int(
    "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0"
    "0a60b1ce1d7e819d7a431d7c90ea0e5f",
    16,
)
Z_SSWU = P - 12
NE = 49
NS = 48
L_HTF = 72  # ceil((ceil(log2(p)) + k) / 8), k = 192

CONTEXT = b"OPRFV1-\x01-P384-SHA384"
HASH_TO_GROUP_DST = b"HashToGroup-" + CONTEXT
HASH_TO_SCALAR_DST = b"HashToScalar-" + CONTEXT

Point = tuple[int, int] | None  # affine; None is the identity


class RefError(ValueError):
    """Reference VOPRF failure (bad element, proof mismatch...)."""


# --------------------------------------------------------------------------- group


def _jac_double(x: int, y: int, z: int) -> tuple[int, int, int]:
    if y == 0 or z == 0:
        return 0, 1, 0
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P  # a = -3
    yy = y * y % P
    s = 4 * x * yy % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return x3, y3, z3


def _jac_add(p1: tuple[int, int, int], p2: tuple[int, int, int]) -> tuple[int, int, int]:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        if s1 != s2:
            return 0, 1, 0
        return _jac_double(x1, y1, z1)
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return x3, y3, z3


def _to_affine(pt: tuple[int, int, int]) -> Point:
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _to_jac(pt: Point) -> tuple[int, int, int]:
    return (0, 1, 0) if pt is None else (pt[0], pt[1], 1)


def add(p1: Point, p2: Point) -> Point:
    return _to_affine(_jac_add(_to_jac(p1), _to_jac(p2)))


def mul(k: int, pt: Point) -> Point:
    k %= N
    acc = (0, 1, 0)
    base = _to_jac(pt)
    for bit in bin(k)[2:]:
        acc = _jac_double(*acc)
        if bit == "1":
            acc = _jac_add(acc, base)
    return _to_affine(acc)


G: Point = (GX, GY)


def on_curve(pt: Point) -> bool:
    if pt is None:
        return False
    x, y = pt
    return (y * y - (x * x * x + A * x + B)) % P == 0


def serialize_element(pt: Point) -> bytes:
    if pt is None:
        raise RefError("cannot serialize the identity")
    x, y = pt
    return bytes([2 + (y & 1)]) + x.to_bytes(48, "big")


def deserialize_element(data: bytes) -> Point:
    if len(data) != NE or data[0] not in (2, 3):
        raise RefError("bad element encoding")
    x = int.from_bytes(data[1:], "big")
    if x >= P:
        raise RefError("x out of range")
    rhs = (x * x * x + A * x + B) % P
    y = pow(rhs, (P + 1) // 4, P)
    if y * y % P != rhs:
        raise RefError("not on curve")
    if (y & 1) != (data[0] & 1):
        y = P - y
    return x, y


def serialize_scalar(k: int) -> bytes:
    return (k % N).to_bytes(NS, "big")


def deserialize_scalar(data: bytes) -> int:
    if len(data) != NS:
        raise RefError("bad scalar length")
    k = int.from_bytes(data, "big")
    if k >= N:
        raise RefError("scalar out of range")
    return k


# --------------------------------------------------------------------------- hashing


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-384 (b_in_bytes 48, s_in_bytes 128)."""
    b_len, s_len = 48, 128
    ell = -(-length // b_len)
    if ell > 255 or len(dst) > 255:
        raise RefError("expand_message_xmd: bad lengths")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(s_len) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha384(msg_prime).digest()
    b_prev = hashlib.sha384(b0 + b"\x01" + dst_prime).digest()
    out = [b_prev]
    for i in range(2, ell + 1):
        b_prev = hashlib.sha384(
            bytes(x ^ y for x, y in zip(b0, b_prev, strict=True)) + bytes([i]) + dst_prime
        ).digest()
        out.append(b_prev)
    return b"".join(out)[:length]


def hash_to_field(msg: bytes, dst: bytes, count: int, modulus: int) -> list[int]:
    uniform = expand_message_xmd(msg, dst, count * L_HTF)
    return [
        int.from_bytes(uniform[i * L_HTF : (i + 1) * L_HTF], "big") % modulus for i in range(count)
    ]


def _sqrt_ratio_candidate(v: int) -> int | None:
    r = pow(v, (P + 1) // 4, P)
    return r if r * r % P == v else None


def map_to_curve_sswu(u: int) -> tuple[int, int]:
    """RFC 9380 section 6.6.2, straightforward (non-constant-time) form."""
    tv1 = (Z_SSWU * Z_SSWU * pow(u, 4, P) + Z_SSWU * u * u) % P
    if tv1 == 0:
        x1 = B * pow(Z_SSWU * A, -1, P) % P
    else:
        x1 = (-B * pow(A, -1, P)) * (1 + pow(tv1, -1, P)) % P
    gx1 = (x1**3 + A * x1 + B) % P
    y = _sqrt_ratio_candidate(gx1)
    if y is not None:
        x = x1
    else:
        x = Z_SSWU * u * u * x1 % P
        gx2 = (x**3 + A * x + B) % P
        y = _sqrt_ratio_candidate(gx2)
        if y is None:
            raise RefError("SSWU: no square root")
    if (u & 1) != (y & 1):  # sgn0 for p odd, m = 1
        y = P - y
    return x, y


def hash_to_group(msg: bytes) -> Point:
    u0, u1 = hash_to_field(msg, HASH_TO_GROUP_DST, 2, P)
    return add(map_to_curve_sswu(u0), map_to_curve_sswu(u1))


def hash_to_scalar(msg: bytes, dst: bytes = HASH_TO_SCALAR_DST) -> int:
    return hash_to_field(msg, dst, 1, N)[0]


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


# --------------------------------------------------------------------------- VOPRF


def derive_key_pair(seed: bytes, info: bytes) -> tuple[int, Point]:
    derive_input = seed + _lp(info)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + CONTEXT)
        if sk != 0:
            return sk, mul(sk, G)
    raise RefError("DeriveKeyPairError")


def _composites(
    k: int | None, b_pt: Point, cs: list[Point], ds: list[Point]
) -> tuple[Point, Point]:
    bm = serialize_element(b_pt)
    seed_dst = b"Seed-" + CONTEXT
    seed = hashlib.sha384(_lp(bm) + _lp(seed_dst)).digest()
    m_pt: Point = None
    z_pt: Point = None
    for i, (c_pt, d_pt) in enumerate(zip(cs, ds, strict=True)):
        transcript = (
            _lp(seed)
            + i.to_bytes(2, "big")
            + _lp(serialize_element(c_pt))
            + _lp(serialize_element(d_pt))
            + b"Composite"
        )
        di = hash_to_scalar(transcript)
        m_pt = add(mul(di, c_pt), m_pt)
        if k is None:
            z_pt = add(mul(di, d_pt), z_pt)
    if k is not None:
        z_pt = mul(k, m_pt)
    return m_pt, z_pt


def _challenge(b_pt: Point, m_pt: Point, z_pt: Point, t2: Point, t3: Point) -> int:
    transcript = b"".join(_lp(serialize_element(x)) for x in (b_pt, m_pt, z_pt, t2, t3))
    return hash_to_scalar(transcript + b"Challenge")


def generate_proof(
    k: int, a_pt: Point, b_pt: Point, cs: list[Point], ds: list[Point], *, r: int
) -> bytes:
    m_pt, z_pt = _composites(k, b_pt, cs, ds)
    t2 = mul(r, a_pt)
    t3 = mul(r, m_pt)
    c = _challenge(b_pt, m_pt, z_pt, t2, t3)
    s = (r - c * k) % N
    return serialize_scalar(c) + serialize_scalar(s)


def verify_proof(a_pt: Point, b_pt: Point, cs: list[Point], ds: list[Point], proof: bytes) -> bool:
    if len(proof) != 2 * NS:
        return False
    c = deserialize_scalar(proof[:NS])
    s = deserialize_scalar(proof[NS:])
    m_pt, z_pt = _composites(None, b_pt, cs, ds)
    t2 = add(mul(s, a_pt), mul(c, b_pt))
    t3 = add(mul(s, m_pt), mul(c, z_pt))
    return _challenge(b_pt, m_pt, z_pt, t2, t3) == c


def blind(input_: bytes, blind_scalar: int) -> bytes:
    element = hash_to_group(input_)
    if element is None:
        raise RefError("InvalidInputError")
    return serialize_element(mul(blind_scalar, element))


def _finalize_hash(input_: bytes, unblinded: Point) -> bytes:
    return hashlib.sha384(_lp(input_) + _lp(serialize_element(unblinded)) + b"Finalize").digest()


def finalize(
    input_: bytes,
    blind_scalar: int,
    evaluated: bytes,
    blinded: bytes,
    *,
    pk: bytes,
    proof: bytes,
) -> bytes:
    ev = deserialize_element(evaluated)
    bl = deserialize_element(blinded)
    if not verify_proof(G, deserialize_element(pk), [bl], [ev], proof):
        raise RefError("VerifyError")
    return _finalize_hash(input_, mul(pow(blind_scalar, -1, N), ev))


@dataclass(frozen=True)
class RefIssuerKey:
    """A VOPRF issuer key from a raw scalar; satisfies ``privacypass.VoprfEvaluator``."""

    sk: int
    proof_r: int | None = None  # fixed proof randomness, for reproducing vectors

    @property
    def public_key(self) -> bytes:
        return serialize_element(mul(self.sk, G))

    def blind_evaluate(self, blinded_msg: bytes) -> tuple[bytes, bytes]:
        bl = deserialize_element(blinded_msg)
        ev = mul(self.sk, bl)
        r = (
            self.proof_r
            if self.proof_r is not None
            else 1 + int.from_bytes(hashlib.sha384(blinded_msg).digest(), "big") % (N - 1)
        )
        proof = generate_proof(self.sk, G, mul(self.sk, G), [bl], [ev], r=r)
        return serialize_element(ev), proof

    def evaluate(self, input_: bytes) -> bytes:
        return _finalize_hash(input_, mul(self.sk, hash_to_group(input_)))
