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


class KeyConfigFetchError(ClientError):
    """The gateway's key configuration could not be fetched or is unusable."""


class ResponseError(ClientError):
    """The encapsulated response did not open or does not decode."""
