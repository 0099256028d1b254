"""RFC 9458 Oblivious HTTP: key configurations and message encapsulation (sans-IO).

The client side is :func:`encapsulate_request` (returns the bytes to send and a
:class:`ClientResponseContext` that opens the answer); the gateway side is
:class:`GatewayKeys` (the key pairs it holds, by key identifier) with
:meth:`GatewayKeys.decapsulate_request`, which returns the inner request and a
:class:`ServerResponseContext` that seals the answer.

The media-type labels are parameters (RFC 9458 section 4.6 lets other protocols reuse the
construction with their own labels); they default to Binary HTTP's.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from . import hpke
from .errors import DecryptError, HPKEError, KeyConfigError, UnknownKeyError

REQUEST_LABEL = b"message/bhttp request"
RESPONSE_LABEL = b"message/bhttp response"

MEDIA_TYPE_REQUEST = "message/ohttp-req"
MEDIA_TYPE_RESPONSE = "message/ohttp-res"
MEDIA_TYPE_KEYS = "application/ohttp-keys"

HEADER_LEN = 7
_NPK = {kem_id: info.npk for kem_id, info in hpke.KEMS.items()}


@dataclass(frozen=True)
class SymmetricSuite:
    """One (KDF, AEAD) pair a key configuration accepts."""

    kdf_id: int
    aead_id: int


@dataclass(frozen=True)
class KeyConfig:
    """An RFC 9458 section 3 key configuration."""

    key_id: int
    kem_id: int
    public_key: bytes
    symmetric: tuple[SymmetricSuite, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise KeyConfigError(f"key_id must fit in 8 bits, got {self.key_id}")
        if not 0 <= self.kem_id <= 0xFFFF:
            raise KeyConfigError(f"kem_id must fit in 16 bits, got {self.kem_id}")
        npk = _NPK.get(self.kem_id)
        if npk is not None and len(self.public_key) != npk:
            raise KeyConfigError(
                f"KEM 0x{self.kem_id:04x} public key must be {npk} bytes, "
                f"got {len(self.public_key)}"
            )
        if not self.symmetric:
            raise KeyConfigError("a key configuration needs at least one (KDF, AEAD) pair")
        if len(self.symmetric) > 0xFFFF // 4:
            raise KeyConfigError(f"too many (KDF, AEAD) pairs: {len(self.symmetric)}")

    def encode(self) -> bytes:
        """The wire form of this configuration."""
        algs = b"".join(struct.pack("!HH", s.kdf_id, s.aead_id) for s in self.symmetric)
        return (
            struct.pack("!BH", self.key_id, self.kem_id)
            + self.public_key
            + struct.pack("!H", len(algs))
            + algs
        )

    @property
    def kem_name(self) -> str:
        """The KEM's display name: "MLKEM768-X25519", "X25519"."""
        return hpke.kem_name(self.kem_id)

    @property
    def post_quantum(self) -> bool:
        """Whether requests sealed to this key stay confidential against a quantum
        adversary (a hybrid KEM with ML-KEM)."""
        info = hpke.KEMS.get(self.kem_id)
        return info is not None and info.post_quantum

    def supported_suites(self) -> Iterator[hpke.Suite]:
        """The configuration's suites that this implementation can run, in its order."""
        for s in self.symmetric:
            # OHTTP seals with the AEAD, so the export-only "AEAD" can never serve.
            if s.aead_id != hpke.Aead.EXPORT_ONLY and hpke.is_supported(
                self.kem_id, s.kdf_id, s.aead_id
            ):
                yield hpke.Suite(self.kem_id, s.kdf_id, s.aead_id)


def _decode_one(data: bytes, offset: int) -> tuple[KeyConfig, int]:
    end = len(data)
    if end - offset < 3:
        raise KeyConfigError(
            f"key configuration truncated at offset {offset}: need 3 header bytes, "
            f"{end - offset} left"
        )
    key_id, kem_id = struct.unpack_from("!BH", data, offset)
    npk = _NPK.get(kem_id)
    if npk is None:
        raise KeyConfigError(f"unsupported KEM 0x{kem_id:04x} in key configuration {key_id}")
    offset += 3
    if end - offset < npk + 2:
        raise KeyConfigError(
            f"key configuration {key_id} truncated: need {npk + 2} bytes for the public key "
            f"and algorithm length, {end - offset} left"
        )
    public_key = bytes(data[offset : offset + npk])
    offset += npk
    (algs_len,) = struct.unpack_from("!H", data, offset)
    offset += 2
    if algs_len < 4 or algs_len % 4:
        raise KeyConfigError(
            f"symmetric algorithms length must be a positive multiple of 4, got {algs_len}"
        )
    if end - offset < algs_len:
        raise KeyConfigError(
            f"key configuration {key_id} truncated: {algs_len} bytes of algorithms "
            f"announced, {end - offset} left"
        )
    symmetric = tuple(
        SymmetricSuite(*struct.unpack_from("!HH", data, offset + i))
        for i in range(0, algs_len, 4)
    )
    return KeyConfig(key_id, kem_id, public_key, symmetric), offset + algs_len


def decode_key_config(data: bytes) -> KeyConfig:
    """Decode exactly one key configuration; trailing bytes are an error."""
    config, end = _decode_one(data, 0)
    if end != len(data):
        raise KeyConfigError(f"{len(data) - end} trailing bytes after the key configuration")
    return config


def encode_key_configs(configs: Iterable[KeyConfig]) -> bytes:
    """The ``application/ohttp-keys`` body: each configuration with a 2-byte length."""
    out = bytearray()
    for config in configs:
        encoded = config.encode()
        out += struct.pack("!H", len(encoded)) + encoded
    return bytes(out)


def decode_key_configs(data: bytes) -> list[KeyConfig]:
    """Decode an ``application/ohttp-keys`` body.

    Configurations with a KEM this implementation does not know are skipped, as RFC 9458
    section 3.2 lets clients do; a list with no usable configuration is an error.
    """
    configs: list[KeyConfig] = []
    offset = 0
    skipped = 0
    while offset < len(data):
        if len(data) - offset < 2:
            raise KeyConfigError(f"truncated length prefix at offset {offset}")
        (length,) = struct.unpack_from("!H", data, offset)
        offset += 2
        if length > len(data) - offset:
            raise KeyConfigError(
                f"key configuration at offset {offset} announces {length} bytes, "
                f"{len(data) - offset} left"
            )
        item = data[offset : offset + length]
        offset += length
        if len(item) >= 3 and struct.unpack_from("!H", item, 1)[0] not in _NPK:
            skipped += 1
            continue
        configs.append(decode_key_config(item))
    if not configs:
        raise KeyConfigError(
            f"no usable key configuration in the list ({skipped} with an unsupported KEM)"
        )
    return configs


def _header(key_id: int, suite: hpke.Suite) -> bytes:
    return struct.pack("!BHHH", key_id, suite.kem_id, suite.kdf_id, suite.aead_id)


def _response_keys(
    secret: bytes, enc: bytes, response_nonce: bytes, aead: hpke.Aead, hash_name: str
) -> tuple[AESGCM | ChaCha20Poly1305, bytes]:
    # RFC 9458 section 4.4: salt = enc || response_nonce, then the suite's HKDF (one
    # Expand block each: keys and nonces are never longer than the hash).
    prk = hmac.digest(enc + response_nonce, secret, hash_name)
    key = hmac.digest(prk, b"key\x01", hash_name)[: aead.key_size]
    nonce = hmac.digest(prk, b"nonce\x01", hash_name)[: aead.nonce_size]
    cipher: AESGCM | ChaCha20Poly1305 = (
        ChaCha20Poly1305(key) if aead is hpke.Aead.CHACHA20_POLY1305 else AESGCM(key)
    )
    return cipher, nonce


def _secret_len(aead: hpke.Aead) -> int:
    return max(aead.key_size, aead.nonce_size)


class ClientResponseContext:
    """What a client keeps after sending a request, to open the response."""

    __slots__ = ("_aead", "_enc", "_hash", "_label", "_secret")

    def __init__(self, ctx: hpke.Context, enc: bytes, label: bytes) -> None:
        self._aead = ctx.suite.aead
        self._hash = ctx.suite.kdf.hash_name
        self._enc = enc
        self._label = label
        self._secret = ctx.export(label, _secret_len(self._aead))

    def decapsulate_response(self, encapsulated: bytes) -> bytes:
        """Open an encapsulated response; raises :class:`DecryptError`."""
        nlen = _secret_len(self._aead)
        if len(encapsulated) < nlen + self._aead.tag_size:
            raise DecryptError(
                f"encapsulated response too short: need at least "
                f"{nlen + self._aead.tag_size} bytes, got {len(encapsulated)}"
            )
        response_nonce = bytes(encapsulated[:nlen])
        cipher, nonce = _response_keys(self._secret, self._enc, response_nonce, self._aead,
                                       self._hash)
        try:
            return cipher.decrypt(nonce, bytes(encapsulated[nlen:]), b"")
        except InvalidTag:
            raise DecryptError("encapsulated response failed authentication") from None


class ServerResponseContext:
    """What a gateway keeps after opening a request, to seal the response."""

    __slots__ = ("_aead", "_enc", "_hash", "_secret")

    def __init__(self, ctx: hpke.Context, enc: bytes, label: bytes) -> None:
        self._aead = ctx.suite.aead
        self._hash = ctx.suite.kdf.hash_name
        self._enc = enc
        self._secret = ctx.export(label, _secret_len(self._aead))

    @property
    def enc(self) -> bytes:
        """The client's encapsulated key share: unique per request (a replay key)."""
        return self._enc

    def encapsulate_response(
        self,
        response: bytes,
        *,
        response_nonce: bytes | None = None,
        rand: hpke.Rand = os.urandom,
    ) -> bytes:
        """Seal ``response``; ``response_nonce`` is injectable for test vectors."""
        nlen = _secret_len(self._aead)
        if response_nonce is None:
            response_nonce = rand(nlen)
        if len(response_nonce) != nlen:
            raise DecryptError(f"response_nonce must be {nlen} bytes, got {len(response_nonce)}")
        cipher, nonce = _response_keys(self._secret, self._enc, response_nonce, self._aead,
                                       self._hash)
        return response_nonce + cipher.encrypt(nonce, response, b"")


def encapsulate_request(
    config: KeyConfig,
    request: bytes,
    *,
    suite: hpke.Suite | None = None,
    request_label: bytes = REQUEST_LABEL,
    response_label: bytes = RESPONSE_LABEL,
    ephemeral: hpke.KeyPair | None = None,
    rand: hpke.Rand = os.urandom,
) -> tuple[bytes, ClientResponseContext]:
    """Seal ``request`` to ``config``; returns the encapsulated request and its context.

    ``suite`` defaults to the configuration's first supported (KDF, AEAD) pair.
    """
    if suite is None:
        suite = next(config.supported_suites(), None)
        if suite is None:
            raise UnknownKeyError(
                f"key configuration {config.key_id} offers no supported HPKE suite"
            )
    elif suite not in set(config.supported_suites()):
        raise UnknownKeyError(f"key configuration {config.key_id} does not offer {suite}")
    hdr = _header(config.key_id, suite)
    enc, ctx = hpke.setup_sender(
        suite, config.public_key, request_label + b"\x00" + hdr, ephemeral=ephemeral, rand=rand
    )
    sealed = hdr + enc + ctx.seal(request)
    return sealed, ClientResponseContext(ctx, enc, response_label)


@dataclass(frozen=True)
class GatewayKey:
    """A key pair the gateway holds, with the configuration it publishes for it."""

    config: KeyConfig
    key_pair: hpke.KeyPair

    def __post_init__(self) -> None:
        if (self.config.public_key != self.key_pair.public_bytes
                or self.config.kem_id != self.key_pair.kem_id):
            raise KeyConfigError(
                f"key configuration {self.config.key_id} does not match its key pair"
            )

    @classmethod
    def create(
        cls,
        key_id: int,
        key_pair: hpke.KeyPair,
        aeads: Iterable[hpke.Aead] = (
            hpke.Aead.AES_128_GCM,
            hpke.Aead.AES_256_GCM,
            hpke.Aead.CHACHA20_POLY1305,
        ),
    ) -> GatewayKey:
        symmetric = tuple(SymmetricSuite(hpke.KDF_HKDF_SHA256, a.value) for a in aeads)
        config = KeyConfig(key_id, key_pair.kem_id, key_pair.public_bytes, symmetric)
        return cls(config, key_pair)


class GatewayKeys:
    """The set of keys a gateway accepts requests for, indexed by key identifier."""

    def __init__(self, keys: Iterable[GatewayKey]) -> None:
        self._keys: dict[int, GatewayKey] = {}
        for key in keys:
            if key.config.key_id in self._keys:
                raise KeyConfigError(f"two keys share key_id {key.config.key_id}")
            self._keys[key.config.key_id] = key

    @property
    def keys(self) -> Mapping[int, GatewayKey]:
        return self._keys

    def decapsulate_request(
        self,
        encapsulated: bytes,
        *,
        request_label: bytes = REQUEST_LABEL,
        response_label: bytes = RESPONSE_LABEL,
    ) -> tuple[bytes, ServerResponseContext]:
        """Open an encapsulated request.

        Raises :class:`UnknownKeyError` for a key identifier or suite the gateway does not
        hold, :class:`DecryptError` for anything malformed or inauthentic.
        """
        if len(encapsulated) < HEADER_LEN:
            raise DecryptError(
                f"encapsulated request too short: need a {HEADER_LEN}-byte header, "
                f"got {len(encapsulated)} bytes"
            )
        key_id, kem_id, kdf_id, aead_id = struct.unpack_from("!BHHH", encapsulated, 0)
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKeyError(f"unknown key identifier {key_id}")
        config = key.config
        if kem_id != config.kem_id or SymmetricSuite(kdf_id, aead_id) not in config.symmetric:
            raise UnknownKeyError(
                f"key {key_id} does not accept suite kem=0x{kem_id:04x} "
                f"kdf=0x{kdf_id:04x} aead=0x{aead_id:04x}"
            )
        suite = hpke.suite(kem_id, kdf_id, aead_id)
        nenc = suite.kem.nenc
        minimum = HEADER_LEN + nenc + suite.aead.tag_size
        if len(encapsulated) < minimum:
            raise DecryptError(
                f"encapsulated request too short: need at least {minimum} bytes, "
                f"got {len(encapsulated)}"
            )
        hdr = bytes(encapsulated[:HEADER_LEN])
        enc = bytes(encapsulated[HEADER_LEN : HEADER_LEN + nenc])
        try:
            ctx = hpke.setup_recipient(
                suite, enc, key.key_pair, request_label + b"\x00" + hdr
            )
            request = ctx.open(bytes(encapsulated[HEADER_LEN + nenc :]))
        except HPKEError:
            raise DecryptError("encapsulated request failed authentication") from None
        return request, ServerResponseContext(ctx, enc, response_label)
