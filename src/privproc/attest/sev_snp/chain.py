"""Trust roots and chain verification: VCEK/VLEK <- ASK/ASVK <- ARK, and a chain cache.

Trust flows one way: ARK (pinned) -> ASK/ASVK -> VCEK/VLEK. A chain whose three common
names all carry the ``SIMULATED-`` prefix (made by :mod:`privproc.attest.simulated`) is
checked exactly like AMD's and reported with ``simulated=True``; its root is never among
the shipped AMD roots.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from privproc.attest.errors import CertificateChainError, CertificateValidityError, RevokedError
from privproc.attest.sev_snp.certificates import (
    _AMD_PSS,
    _SHA384,
    _check_pss_declared,
    _check_validity,
    _cn,
    _der,
    _hw_id,
    _is_ca,
    _product_name,
    _serial,
    _verify_pss,
    certified_tcb,
    der_blobs,
    load_certificate,
)
from privproc.attest.sev_snp.report import SigningKey, TcbVersion
from privproc.attest.sev_snp.signature import _leaf_public_key

__all__ = [
    "PRODUCTS",
    "SIMULATED_PREFIX",
    "AmdChain",
    "ChainCache",
    "TrustRoots",
    "amd_ark",
    "amd_intermediates",
    "amd_trust_roots",
    "leaf_product",
    "verify_chain",
]

PRODUCTS: Final = ("Milan", "Genoa", "Turin")
SIMULATED_PREFIX: Final = "SIMULATED-"  # common-name prefix of the simulated platform's chain

_SHA256: Final = hashes.SHA256()


class TrustRoots:
    """An immutable set of pinned root certificates (matched by exact DER)."""

    __slots__ = ("_by_der", "key")

    def __init__(self, certs: Iterable[x509.Certificate]) -> None:
        self._by_der: dict[bytes, x509.Certificate] = {_der(c): c for c in certs}
        self.key: bytes = hashlib.sha256(b"".join(sorted(
            hashlib.sha256(d).digest() for d in self._by_der))).digest()

    def __contains__(self, cert: object) -> bool:
        return isinstance(cert, x509.Certificate) and _der(cert) in self._by_der

    def __iter__(self) -> Iterator[x509.Certificate]:
        return iter(self._by_der.values())

    def __len__(self) -> int:
        return len(self._by_der)


def _read_pem(*parts: str) -> list[x509.Certificate]:
    res = resources.files("privproc.attest").joinpath("roots", *parts)
    return x509.load_pem_x509_certificates(res.read_bytes())


@cache
def amd_trust_roots() -> TrustRoots:
    """AMD's ARKs for Milan, Genoa and Turin, shipped in privproc/attest/roots/amd/."""
    return TrustRoots(c for p in PRODUCTS for c in _read_pem("amd", f"ark_{p.lower()}.pem"))


@cache
def amd_intermediates(product: str, key_type: SigningKey = SigningKey.VCEK
                      ) -> x509.Certificate:
    """The shipped ASK (VCEK chains) or ASVK (VLEK chains) for a product."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}, expected one of {PRODUCTS}")
    prefix = "ask" if key_type is SigningKey.VCEK else "asvk"
    return _read_pem("amd", f"{prefix}_{product.lower()}.pem")[0]


@cache
def amd_ark(product: str) -> x509.Certificate:
    """The shipped ARK of a product (one of :data:`PRODUCTS`)."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}, expected one of {PRODUCTS}")
    return _read_pem("amd", f"ark_{product.lower()}.pem")[0]


def leaf_product(leaf: bytes | str | x509.Certificate) -> str | None:
    """The product (Milan, Genoa, Turin) a VCEK/VLEK's productName extension names, if any."""
    name = _product_name(load_certificate(leaf))
    product = None if name is None else name.split("-")[0]
    return product if product in PRODUCTS else None


@dataclass(frozen=True, slots=True)
class AmdChain:
    """Result of a successful chain check: what the chain vouches for."""

    product: str
    key_type: SigningKey
    leaf_public_key: ec.EllipticCurvePublicKey
    hw_id: bytes | None
    tcb: TcbVersion
    not_before: datetime
    not_after: datetime
    simulated: bool = False  # a SIMULATED-ARK-* chain (privproc.attest.simulated)

    def check_time(self, now: datetime) -> None:
        if now < self.not_before:
            raise CertificateValidityError(
                f"certificate chain is not valid before {self.not_before.isoformat()}, "
                f"verification time is {now.isoformat()}")
        if now > self.not_after:
            raise CertificateValidityError(
                f"certificate chain expired at {self.not_after.isoformat()}, "
                f"verification time is {now.isoformat()}")


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")
    return now


def _check_crl(crl: x509.CertificateRevocationList, ark: x509.Certificate,
               certs: Sequence[tuple[str, x509.Certificate]], now: datetime) -> None:
    if crl.issuer != ark.subject:
        raise CertificateChainError(
            f"CRL issuer is {crl.issuer.rfc4514_string()!r}, expected "
            f"{ark.subject.rfc4514_string()!r}")
    try:
        _check_pss_declared("CRL", crl.signature_algorithm_oid, crl.signature_hash_algorithm)
    except UnsupportedAlgorithm as exc:
        raise CertificateChainError(f"CRL: unsupported signature algorithm: {exc}") from None
    key = ark.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateChainError("CRL issuer key is not RSA")
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, _AMD_PSS, _SHA384)
    except InvalidSignature:
        raise CertificateChainError("CRL signature by the ARK does not verify") from None
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise CertificateValidityError(
            f"CRL is stale: nextUpdate {next_update.isoformat()}, verification time "
            f"{now.isoformat()}")
    for what, cert in certs:
        entry = crl.get_revoked_certificate_by_serial_number(_serial(cert))
        if entry is not None:
            raise RevokedError(
                f"{what} {_cn(cert.subject)!r} serial {_serial(cert):#x} was revoked at "
                f"{entry.revocation_date_utc.isoformat()}")


def _load_crl(crl: bytes | x509.CertificateRevocationList) -> x509.CertificateRevocationList:
    if isinstance(crl, x509.CertificateRevocationList):
        return crl
    try:
        if crl.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(crl)
        return x509.load_der_x509_crl(crl)
    except ValueError as exc:
        raise CertificateChainError(f"cannot parse CRL: {exc}") from None


def verify_chain(leaf_cert: x509.Certificate | bytes | str,
                 ask_or_asvk: x509.Certificate | bytes | str,
                 ark: x509.Certificate | bytes | str,
                 pinned_roots: TrustRoots | Iterable[x509.Certificate] | None,
                 now: datetime,
                 *,
                 crl: bytes | x509.CertificateRevocationList | None = None) -> AmdChain:
    """Verify VCEK/VLEK <- ASK/ASVK <- ARK (pinned, self-signed), all RSA-PSS SHA-384.

    Also checks validity periods at ``now``, that the three certificates belong to the same
    product and key type, reads the certified TCB and hwID from the leaf, and (optionally)
    checks the ASK and leaf serials against ``crl`` (signed by the ARK).
    """
    now = _aware(now)
    roots = _as_roots(pinned_roots)
    leaf = load_certificate(leaf_cert)
    ask = load_certificate(ask_or_asvk)
    root = load_certificate(ark)

    if root not in roots:
        raise CertificateChainError(
            f"root {_cn(root.subject)!r} (sha256 {root.fingerprint(_SHA256).hex()[:16]}...) "
            f"is not one of the {len(roots)} pinned roots")
    if root.issuer != root.subject:
        raise CertificateChainError(f"root {_cn(root.subject)!r} is not self-issued")
    ark_cn = _cn(root.subject)
    # The simulated platform's chain carries the same names behind a SIMULATED- prefix.
    pre = SIMULATED_PREFIX if ark_cn.startswith(SIMULATED_PREFIX) else ""
    base_cn = ark_cn[len(pre):]
    if not base_cn.startswith("ARK-") or base_cn[4:] not in PRODUCTS:
        raise CertificateChainError(
            f"root CN must be ARK-<product> with product in {PRODUCTS}, got {ark_cn!r}")
    product = base_cn[4:]
    _verify_pss("ARK (self-signature)", root, root)
    if not _is_ca(root):
        raise CertificateChainError(f"{ark_cn} is not marked as a CA")

    ask_cn = _cn(ask.subject)
    if ask_cn == f"{pre}SEV-{product}":
        key_type, leaf_cn = SigningKey.VCEK, f"{pre}SEV-VCEK"
    elif ask_cn == f"{pre}SEV-VLEK-{product}":
        key_type, leaf_cn = SigningKey.VLEK, f"{pre}SEV-VLEK"
    else:
        raise CertificateChainError(
            f"intermediate CN must be '{pre}SEV-{product}' (ASK) or '{pre}SEV-VLEK-{product}' "
            f"(ASVK) under {ark_cn}, got {ask_cn!r}")
    _verify_pss(f"intermediate {ask_cn!r}", ask, root)
    if not _is_ca(ask):
        raise CertificateChainError(f"intermediate {ask_cn!r} is not marked as a CA")

    got_leaf_cn = _cn(leaf.subject)
    if got_leaf_cn != leaf_cn:
        raise CertificateChainError(
            f"leaf CN must be {leaf_cn!r} under {ask_cn!r}, got {got_leaf_cn!r}")
    _verify_pss(f"leaf {leaf_cn!r}", leaf, ask)
    leaf_key = _leaf_public_key(leaf)

    for what, cert in (("ARK", root), ("intermediate", ask), ("leaf", leaf)):
        _check_validity(what, cert, now)

    name = _product_name(leaf)
    if name is not None and name.split("-")[0] != product:
        raise CertificateChainError(
            f"leaf productName is {name!r}, expected {product!r} (from {ark_cn})")
    hw_id = _hw_id(leaf)
    if key_type is SigningKey.VCEK and hw_id is None:
        raise CertificateChainError("VCEK lacks the hwID extension (1.3.6.1.4.1.3704.1.4)")
    tcb = certified_tcb(leaf, product)

    if crl is not None:
        _check_crl(_load_crl(crl), root, (("intermediate", ask), ("leaf", leaf)), now)

    return AmdChain(
        product=product,
        key_type=key_type,
        leaf_public_key=leaf_key,
        hw_id=hw_id if key_type is SigningKey.VCEK else None,
        tcb=tcb,
        not_before=max(c.not_valid_before_utc for c in (root, ask, leaf)),
        not_after=min(c.not_valid_after_utc for c in (root, ask, leaf)),
        simulated=bool(pre),
    )


def _as_roots(roots: TrustRoots | Iterable[x509.Certificate] | None) -> TrustRoots:
    if roots is None:
        return amd_trust_roots()
    if isinstance(roots, TrustRoots):
        return roots
    return TrustRoots(roots)


class ChainCache:
    """Bounded LRU of successful chain checks, keyed on the DER of leaf+ASK+ARK (+CRL, roots).

    A hit skips the three RSA-PSS verifications and certificate parsing; validity periods
    are still re-checked against each call's ``now``. Failures are never cached.
    Thread-safe.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, AmdChain] = OrderedDict()
        # Memo of PEM/DER input bytes -> DER blobs (a pure function of the input), so a hit
        # does not even base64-decode the PEM bundle again.
        self._ders: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._ders.clear()
            self.hits = self.misses = 0

    @staticmethod
    def key(leaf_der: bytes, chain_ders: Sequence[bytes], roots: TrustRoots,
            crl_der: bytes = b"") -> bytes:
        h = hashlib.sha256(roots.key)
        for part in (leaf_der, *chain_ders, b"--crl--", crl_der):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        return h.digest()

    def der_blobs(self, data: bytes | str | x509.Certificate
                  | Sequence[bytes | str | x509.Certificate]) -> tuple[bytes, ...]:
        """:func:`der_blobs`, memoised for bytes/str input."""
        if not isinstance(data, bytes | str):
            return tuple(der_blobs(data))
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        with self._lock:
            found = self._ders.get(raw)
            if found is not None:
                self._ders.move_to_end(raw)
                return found
        blobs = tuple(der_blobs(raw))
        with self._lock:
            self._ders[raw] = blobs
            while len(self._ders) > self.maxsize:
                self._ders.popitem(last=False)
        return blobs

    def get(self, key: bytes) -> AmdChain | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self.misses += 1
            else:
                self._entries.move_to_end(key)
                self.hits += 1
            return hit

    def put(self, key: bytes, chain: AmdChain) -> None:
        with self._lock:
            self._entries[key] = chain
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
