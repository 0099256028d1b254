"""The exception hierarchy of the sans-IO protocol core.

Every parser and protocol function in :mod:`privproc.wire` raises a subclass of
:class:`WireError` and nothing else for bad input, so callers can fail closed with one
``except`` clause while still telling the cases apart.
"""

from privproc.errors import PrivprocError


class WireError(PrivprocError):
    """Base class for every error raised by the protocol core."""


class HPKEError(WireError):
    """HPKE setup, sealing or opening failed (bad key, bad ciphertext, unsupported suite)."""


class BinaryHttpError(WireError):
    """A Binary HTTP (RFC 9292) message is malformed or cannot be encoded."""


class OHTTPError(WireError):
    """Oblivious HTTP (RFC 9458) encapsulation failed."""


class KeyConfigError(OHTTPError):
    """A key configuration or an ``application/ohttp-keys`` list is malformed."""


class UnknownKeyError(OHTTPError):
    """The encapsulated request names a key identifier or suite the gateway does not hold."""


class DecryptError(OHTTPError):
    """The encapsulated message is malformed, truncated, or fails authentication."""


class MerkleError(WireError):
    """A Merkle tree proof, hash or tile is malformed or does not verify."""


class NoteError(WireError):
    """A C2SP signed note or key is malformed or does not verify."""


class CheckpointError(WireError):
    """A C2SP tlog checkpoint or cosignature is malformed."""
