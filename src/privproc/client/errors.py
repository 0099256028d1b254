"""The client SDK's exception hierarchy: every failure the SDK reports is a ClientError.

The SDK's public methods (:class:`~privproc.client.sdk.PrivateProcessingClient` and its
async variant: the constructors, ``refresh``, ``start``, ``close``, ``candidates``,
``verified_nodes``, ``summarize``, ``write``, ``gateway_key``, ...) raise nothing else:
a failure of a layer below (the log, the network, the local state files) is raised as
the subclass that says what failed, with the original exception as ``__cause__``.
Tell cases apart by type, never by message text; expiry, for instance, is
:class:`KeyExpiredError` (a node's attested key) or :class:`KeyRecordExpiredError` (every
logged gateway or issuer key), and :attr:`NoVerifiedNodeError.errors` keeps each refused
node's exception.

Outline (indentation is inheritance)::

    ClientError
        RequestError
            InvalidInputError        (also a ValueError) bad argument; nothing sent or spent
        TrustConfigError             the trust file
        StateError                   the local state files (log view, token wallet)
        TransportError
            RelayRefusedError, NodeBusyError
            LogUnavailableError      (also a LogError)
        KeyConfigFetchError, ResponseError
        ClassicalKeyRefusedError     require_pq = true and a key is classical-only
            KeyDowngradeError        a classical gateway key offered while the log holds
                                     a valid post-quantum one (whatever require_pq says)
            NodeKeyNotPostQuantumError (also a NodeVerificationError)
        NodeVerificationError
            EvidenceRefusedError, KeyExpiredError, MeasurementNotLoggedError,
            ReleaseRevokedError, NodeKeyNotPostQuantumError
        NoVerifiedNodeError
        KeyNotLoggedError
            TooManyKeysError, KeyRecordExpiredError
        LogError
            LogVerificationError
                StaleLogError        a stapled checkpoint older than max_checkpoint_age
                LogForkDetectedError (also a privproc.tlog.client.LogForkError)
        UnexpectedError              a failure the SDK does not classify

Defined beside their code, also ClientErrors: ``tokens.TokenError`` (and
``QuotaExceededError``), ``node.NodeResponseError``, ``node.TaskFailedError``,
``receipt.ReceiptError``.
"""

from collections.abc import Mapping

from privproc.errors import PrivprocError
from privproc.tlog.client import LogForkError


class ClientError(PrivprocError):
    """Base class for every error the client SDK raises."""


class RequestError(ClientError):
    """The request given to the SDK cannot be encoded (bad method, path or fields)."""


class InvalidInputError(RequestError, ValueError):
    """An argument given to the SDK is outside what it (or the node) accepts: refused
    before any network access or token spend. ``field`` names the argument (for
    summaries and rewrites as :mod:`privproc.wire.limits` does: ``messages[3].text``,
    ``max_bullets``, ``reader``, ``draft``, ``tone``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TrustConfigError(ClientError):
    """The trust configuration file is missing, malformed or inconsistent."""


class StateError(ClientError):
    """The client's local state (the log view or the token wallet in its state
    directory) cannot be read or written."""


class UnexpectedError(ClientError):
    """A failure the SDK does not classify (a bug, or a fault of a layer below it); the
    original exception is ``__cause__``. Worth reporting."""


class TransportError(ClientError):
    """The relay could not be reached, or answered something that is not OHTTP."""


class RelayRefusedError(TransportError):
    """The relay or gateway refused the encapsulated request (outer HTTP status)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"relay answered {status}: {detail}")
        self.status = status
        self.detail = detail


class RelayUnreachableError(TransportError):
    """No connection to the relay could be made (it, or the network, is down)."""


class NodeBusyError(TransportError):
    """Every node the client tried was busy (503) for all its retries."""


class TokenChallengeRefusedError(ClientError):
    """The gateway asked for a token under a challenge that is not the one the trust file
    names (another issuer or origin, or a redemption context of its own): such a challenge
    would tag every later token of this client, linking its requests."""


class KeyConfigFetchError(ClientError):
    """The gateway's key configuration could not be fetched or is unusable."""


class ResponseError(ClientError):
    """The encapsulated response did not open or does not decode."""


class NodeVerificationError(ClientError):
    """A candidate node failed verification (the reason names which check)."""


class EvidenceRefusedError(NodeVerificationError):
    """The node's evidence does not verify against the pinned roots and policy."""


class KeyExpiredError(NodeVerificationError):
    """The node's attested key has expired."""


class MeasurementNotLoggedError(NodeVerificationError):
    """The node's measurement is not in the transparency log."""


class ReleaseRevokedError(NodeVerificationError):
    """The node runs a release whose measurement a later log record revoked."""


class ClassicalKeyRefusedError(ClientError):
    """The trust file says ``require_pq = true`` and the gateway offers only keys whose KEM
    is classical (X25519 alone): nothing is sealed to them."""


class KeyDowngradeError(ClassicalKeyRefusedError):
    """The key bundle offers only classical OHTTP keys of the gateway while the client's
    own copy of the log holds a valid post-quantum key of it: a relay replaying an old
    bundle (still consistent with the log) to make the client seal to X25519 alone.
    Refused whatever ``require_pq`` says; nothing is sent."""


class NodeKeyNotPostQuantumError(ClassicalKeyRefusedError, NodeVerificationError):
    """The trust file says ``require_pq = true`` and the node's attested key is
    classical-only: the node is refused."""


class NoVerifiedNodeError(ClientError):
    """No candidate node passed verification: nothing was sent. ``errors`` holds each
    refused node's exception (test them by type: every node's key expired is
    ``all(isinstance(e, KeyExpiredError) for e in errors.values())``), ``reasons`` the
    same as text."""

    def __init__(self, reasons: dict[str, str],
                 errors: Mapping[str, NodeVerificationError] | None = None) -> None:
        detail = "; ".join(f"{n}: {r}" for n, r in sorted(reasons.items())) or "none offered"
        super().__init__(f"no verified node ({detail})")
        self.reasons = reasons
        self.errors: dict[str, NodeVerificationError] = dict(errors or {})


class KeyNotLoggedError(ClientError):
    """A gateway or issuer key has no valid key record in the transparency log: the
    client seals nothing to it and asks it for no token."""


class TooManyKeysError(KeyNotLoggedError):
    """More keys of one purpose and owner are valid at once than the trust file allows:
    a sign that some clients are being given keys of their own."""


class KeyRecordExpiredError(KeyNotLoggedError):
    """Every key record of the gateway's (or the issuer's) keys in the log has expired:
    the owner has not logged a new key yet, or this device's clock is ahead."""


class LogError(ClientError):
    """The transparency log could not be read or does not verify (the original failure,
    a :class:`privproc.tlog.client.LogClientError`, is ``__cause__``)."""


class LogUnavailableError(LogError, TransportError):
    """The log's checkpoint, tiles or entries could not be read through the relay."""


class LogVerificationError(LogError):
    """The log's checkpoint or a stapled proof does not verify."""


class StaleLogError(LogVerificationError):
    """The checkpoint stapled to a bundle was last cosigned by a quorum of witnesses
    longer ago than the trust file's ``max_checkpoint_age``: whoever served it (the relay)
    may be hiding newer log records, such as a revocation or a new key."""


class LogForkDetectedError(LogVerificationError, LogForkError):
    """Two signed checkpoints of the log that are not consistent: proof that the log
    shows different clients different histories. ``first`` and ``second`` are the two
    signed checkpoint notes, the evidence to keep. Also a
    :class:`privproc.tlog.client.LogForkError`."""

    def __init__(self, message: str, first: bytes, second: bytes) -> None:
        LogForkError.__init__(self, message, first, second)
