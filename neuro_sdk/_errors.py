"""The one exception hierarchy of ``neuro_sdk``.

Every error the SDK raises on purpose derives from :class:`NeuroError`::

    NeuroError(Exception)
    ├── ClientError                       HTTP error answered by the server (.status, message)
    │   ├── IllegalArgumentError(ValueError)   400, and any other status >= 400 not listed here
    │   │   └── ServerError                    5xx other than 502 and 503
    │   │       └── InsufficientStorage        507: a storage quota, or the server's disk, is full
    │   ├── AuthError
    │   │   ├── AuthenticationError            401
    │   │   └── AuthorizationError             403
    │   ├── ResourceNotFound(ValueError)       404
    │   ├── BadGateway                         502
    │   └── ServerNotAvailable(ValueError)     503
    │   (405 raises a plain ClientError)
    ├── NDJSONError                       an ``{"error": ...}`` line inside an NDJSON stream
    ├── ProtocolError(ValueError)         the server broke the wire protocol (bad JSON, bad frame)
    ├── ConfigError                       local configuration missing or invalid (not logged in)
    └── ServerUnreachable(OSError)        no HTTP answer at all: connection refused, DNS, timeout

The mapping from an HTTP status to a class lives in :func:`error_from_status`; the same mapping is
used for websocket handshakes, whose message comes from the ``X-Error`` response header.

Example::

    try:
        job = await client.jobs.status(job_id)
    except ResourceNotFound:
        ...
"""

from __future__ import annotations

import json


class NeuroError(Exception):
    """Root of every error raised on purpose by ``neuro_sdk``."""


class ClientError(NeuroError):
    """The server answered with an HTTP error status.

    ``status`` is the HTTP status (``None`` when the error was detected on the client side),
    ``str(err)`` is the message from the JSON ``error`` key of the body (or the raw text).
    """

    def __init__(self, message: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class IllegalArgumentError(ClientError, ValueError):
    """HTTP 400 (bad request), and any status >= 400 without a more specific class."""


class ServerError(IllegalArgumentError):
    """HTTP 5xx other than 502 and 503."""


class InsufficientStorage(ServerError):
    """HTTP 507: the write did not fit, in the user's storage quota or on the server's disk
    (the message says which, and how much is used); nothing partial was kept."""


class AuthError(ClientError):
    """Authentication or authorization failed."""


class AuthenticationError(AuthError):
    """HTTP 401: the token is missing, invalid or expired."""


class AuthorizationError(AuthError):
    """HTTP 403: the user may not do this."""


class ResourceNotFound(ClientError, ValueError):
    """HTTP 404."""


class BadGateway(ClientError):
    """HTTP 502."""


class ServerNotAvailable(ClientError, ValueError):
    """HTTP 503."""


class NDJSONError(NeuroError):
    """The server reported an error in the middle of an NDJSON stream."""


class ProtocolError(NeuroError, ValueError):
    """The server sent something that does not follow the wire protocol."""


class ConfigError(NeuroError):
    """Local configuration is missing or invalid (e.g. not logged in)."""


class ServerUnreachable(NeuroError, OSError):
    """No HTTP answer: connection refused, name resolution failed, connect timeout.

    ``url`` is the URL that could not be reached.
    """

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def error_from_status(status: int, message: str) -> ClientError:
    """Map an HTTP error status (>= 400) and its message to an exception instance."""
    cls: type[ClientError]
    if status == 400:
        cls = IllegalArgumentError
    elif status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = AuthorizationError
    elif status == 404:
        cls = ResourceNotFound
    elif status == 405:
        cls = ClientError
    elif status == 502:
        cls = BadGateway
    elif status == 503:
        cls = ServerNotAvailable
    elif status == 507:
        cls = InsufficientStorage
    elif status >= 500:
        cls = ServerError
    else:
        cls = IllegalArgumentError
    return cls(message, status)


def error_message_from_text(text: str) -> str:
    """The message of an error body or ``X-Error`` header.

    A JSON object with an ``error`` key gives that value; anything else is used verbatim.
    """
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return text
