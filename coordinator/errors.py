"""Domain errors of the coordinator. Each also inherits the matching builtin; the API layer
(coordinator/api/errors.py) maps each class to one HTTP status. Messages say what was
wrong and what the caller should do.
"""
from __future__ import annotations

from coordinator import CoordinatorError


class NotFoundError(CoordinatorError, LookupError):
    """A job, round, unit, lease, result or blob does not exist."""


class InvalidInputError(CoordinatorError, ValueError):
    """Well-formed JSON whose content is wrong: bad spec, hash mismatch, bad signature field."""


class BadRequestError(CoordinatorError, ValueError):
    """The request itself was broken (e.g. a truncated upload)."""


class UnauthenticatedError(CoordinatorError, PermissionError):
    """Missing, expired, replayed or wrongly signed auth."""


class ForbiddenError(CoordinatorError, PermissionError):
    """Authenticated, but not allowed: unstaked, not the lease holder, wrong signer."""


class ConflictError(CoordinatorError, RuntimeError):
    """The request contradicts current state (job not open, unit already accepted...)."""


class GoneError(CoordinatorError, RuntimeError):
    """The lease existed but has expired; its unit went back to the queue."""


class PayloadTooLargeError(CoordinatorError, ValueError):
    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class RateLimitedError(CoordinatorError, RuntimeError):
    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(CoordinatorError, RuntimeError):
    """A dependency (chain RPC, verifier) is not reachable or not configured."""


class ConfigurationError(CoordinatorError, ValueError):
    """The settings contradict each other or the environment (e.g. a key that is not the
    configured coordinator address). Raised at start, never per request."""
