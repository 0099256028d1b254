"""The client SDK's exception hierarchy: every failure the SDK reports is a ClientError."""


class ClientError(Exception):
    """Base class for every error the client SDK raises."""


class RequestError(ClientError):
    """The request given to the SDK cannot be encoded (bad method, path or fields)."""


class TransportError(ClientError):
    """The relay could not be reached, or answered something that is not OHTTP."""


class RelayRefusedError(TransportError):
    """The relay or gateway refused the encapsulated request (outer HTTP status)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"relay answered {status}: {detail}")
        self.status = status
        self.detail = detail


class NodeBusyError(TransportError):
    """Every node the client tried was busy (503) for all its retries."""


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


class NoVerifiedNodeError(ClientError):
    """No candidate node passed verification: nothing was sent."""

    def __init__(self, reasons: dict[str, str]) -> None:
        detail = "; ".join(f"{n}: {r}" for n, r in sorted(reasons.items())) or "none offered"
        super().__init__(f"no verified node ({detail})")
        self.reasons = reasons


class KeyNotLoggedError(ClientError):
    """A gateway or issuer key has no valid key record in the transparency log: the
    client seals nothing to it and asks it for no token."""


class TooManyKeysError(KeyNotLoggedError):
    """More keys of one purpose and owner are valid at once than the trust file allows:
    a sign that some clients are being given keys of their own."""


class LogVerificationError(ClientError):
    """The log's checkpoint or a stapled proof does not verify (the log fork case is
    :class:`privproc.tlog.client.LogForkError`, raised as is)."""
