"""Node registrations: what a processing node sends the gateway's node directory.

A node proves it is the attested node by signing its registration with a registration
key that its evidence binds into REPORT_DATA (beside its HPKE key); the directory names
the node after that key (:func:`privproc.attest.evidence.node_id_for`), so no one can
register under another node's name or point its entry elsewhere. Media type
``application/privproc-registration+json``; version 1::

    {"version": 1, "url": "http://10.0.0.7:8443", "time": 1764400000,
     "bundle": "<base64 evidence bundle>", "signature": "<base64 Ed25519 signature>"}

The signature is Ed25519 over::

    b"privproc-registration-v1\\x00" || u32 len || url (UTF-8) || u64 time
      || SHA-256(bundle)

``time`` (seconds since the epoch) lets the directory refuse an old registration replayed
later. Decoding is strict: exact keys, types, canonical base64, sizes within limits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from privproc import jsondoc

from .errors import WireError

MEDIA_TYPE: Final = "application/privproc-registration+json"
FORMAT_VERSION: Final = 1
MAX_REGISTRATION: Final = 256 * 1024
MAX_URL: Final = 512
_LABEL: Final = b"privproc-registration-v1\x00"
_SIGNATURE_SIZE: Final = 64


class RegistrationError(WireError):
    """A registration does not parse, or its signature does not verify."""


def signed_message(url: str, time: int, bundle: bytes) -> bytes:
    data = url.encode("utf-8")
    return (_LABEL + struct.pack("!I", len(data)) + data + struct.pack("!Q", time)
            + hashlib.sha256(bundle).digest())


@dataclass(frozen=True)
class Registration:
    url: str
    time: int
    bundle: bytes
    signature: bytes

    def encode(self) -> bytes:
        return json.dumps({
            "version": FORMAT_VERSION, "url": self.url, "time": self.time,
            "bundle": base64.b64encode(self.bundle).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }, separators=(",", ":")).encode()

    def verify(self, registration_key: bytes) -> None:
        """Raise RegistrationError unless ``registration_key`` signed this registration."""
        try:
            Ed25519PublicKey.from_public_bytes(registration_key).verify(
                self.signature, signed_message(self.url, self.time, self.bundle))
        except (InvalidSignature, ValueError):
            raise RegistrationError("the registration is not signed by the attested "
                                    "registration key") from None


def sign_registration(key: Ed25519PrivateKey, url: str, time: int, bundle: bytes
                      ) -> Registration:
    return Registration(url, time, bundle, key.sign(signed_message(url, time, bundle)))


def _b64(doc: dict[str, object], name: str) -> bytes:
    value = doc[name]
    if not isinstance(value, str):
        raise RegistrationError(f"{name} must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RegistrationError(f"{name} is not canonical base64") from None
    if base64.b64encode(data).decode() != value:
        raise RegistrationError(f"{name} is not canonical base64")
    return data


def decode_registration(data: bytes) -> Registration:
    if len(data) > MAX_REGISTRATION:
        raise RegistrationError(f"registration is {len(data)} bytes, limit {MAX_REGISTRATION}")
    try:
        doc = jsondoc.parse(data)
    except ValueError:
        raise RegistrationError("registration is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"version", "url", "time", "bundle",
                                                 "signature"}:
        raise RegistrationError("registration must be a JSON object with exactly version, "
                                "url, time, bundle, signature")
    if doc["version"] != FORMAT_VERSION or isinstance(doc["version"], bool):
        raise RegistrationError(f"unsupported registration version {doc['version']!r}")
    url, time = doc["url"], doc["time"]
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
        raise RegistrationError(f"url must be a string of 1..{MAX_URL} characters")
    if isinstance(time, bool) or not isinstance(time, int) or not 0 <= time < 1 << 63:
        raise RegistrationError("time must be a non-negative integer")
    signature = _b64(doc, "signature")
    if len(signature) != _SIGNATURE_SIZE:
        raise RegistrationError(f"signature must be {_SIGNATURE_SIZE} bytes")
    return Registration(url, time, _b64(doc, "bundle"), signature)
