"""One exception tree for the whole gateway.

Every failure is a `GatewayError` with a canonical `kind`; each protocol module renders it in its own
error shape. Upstream errors are mapped to a kind at one boundary (providers), so the server never sees
a raw transport exception. Messages must never contain secrets: they reach clients verbatim.
"""

from __future__ import annotations

import enum
from typing import Mapping


class ErrorKind(str, enum.Enum):
    INVALID_REQUEST = "invalid_request"  # 400: the client's fault, never retried
    AUTH = "auth"  # 401
    PERMISSION = "permission"  # 403
    NOT_FOUND = "not_found"  # 404 (unknown model, unknown route)
    TOO_LARGE = "too_large"  # 413
    RATE_LIMITED = "rate_limited"  # 429, carries retry_after
    OVERLOADED = "overloaded"  # 529/503: capacity exhausted upstream
    UPSTREAM = "upstream"  # 502: upstream failed or spoke nonsense
    TIMEOUT = "timeout"  # 504
    INTERNAL = "internal"  # 500: our bug; message is generic


DEFAULT_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.AUTH: 401,
    ErrorKind.PERMISSION: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.UPSTREAM: 502,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.INTERNAL: 500,
}


class GatewayError(Exception):
    """A failure with a canonical kind. `param` names the offending field for 400s."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        upstream_status: int | None = None,
        upstream_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.status = status or DEFAULT_STATUS[kind]
        self.upstream_status = upstream_status
        self.upstream_headers = upstream_headers  # for the pool (rate-limit headers); never sent on

    @property
    def retryable(self) -> bool:
        """Whether another account/target might succeed where this attempt failed."""
        return self.kind in (
            ErrorKind.RATE_LIMITED,
            ErrorKind.OVERLOADED,
            ErrorKind.UPSTREAM,
            ErrorKind.TIMEOUT,
            ErrorKind.AUTH,  # a bad key on one account says nothing about the next account
            ErrorKind.PERMISSION,
        )

    def __repr__(self) -> str:
        return f"GatewayError({self.kind.value}, {self.message!r}, status={self.status})"


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_REQUEST, message, param=param)


def not_found(message: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, message)


def from_status(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """Map an upstream HTTP status to a canonical error (used by every upstream decoder)."""
    if status == 429:
        return GatewayError(ErrorKind.RATE_LIMITED, message, retry_after=retry_after, upstream_status=status)
    if status in (401, 403):
        # The upstream rejected *our* credentials: the client's own key is fine, so it sees a 502.
        kind = ErrorKind.AUTH if status == 401 else ErrorKind.PERMISSION
        return GatewayError(kind, message, status=502, upstream_status=status)
    if status == 404:
        return GatewayError(ErrorKind.NOT_FOUND, message, upstream_status=status)
    if status == 413:
        return GatewayError(ErrorKind.TOO_LARGE, message, upstream_status=status)
    if status in (400, 422):
        return GatewayError(ErrorKind.INVALID_REQUEST, message, upstream_status=status)
    if status in (503, 529):
        return GatewayError(ErrorKind.OVERLOADED, message, retry_after=retry_after, upstream_status=status)
    if status in (408, 504):
        return GatewayError(ErrorKind.TIMEOUT, message, upstream_status=status)
    return GatewayError(ErrorKind.UPSTREAM, message, upstream_status=status)
