"""The one exception handlers raise, and the documented error bodies.

Handlers never build error responses themselves: they raise :class:`ApiError` and the dispatcher
turns it into ``{"status": ..., "message": ...}`` (plus ``errors`` for validation failures), the
shape the Console API uses for every error (reference §3).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EXPERIMENT_NOT_FOUND",
    "HOLDOUT_NOT_FOUND",
    "INVALID_REQUEST",
    "LAYER_NOT_FOUND",
    "NAME_IN_USE",
    "NOT_FOUND",
    "SEGMENT_NOT_FOUND",
    "TAG_NOT_FOUND",
    "ApiError",
    "bad_field",
    "invalid_request",
    "name_in_use",
    "not_found",
    "unauthorized",
    "validation_failed",
]

INVALID_REQUEST = "Invalid request. Please check the request input and try again."
NAME_IN_USE = "Name is already in use"
NOT_FOUND = "Not Found. The requested resource could not be found."
# Entity-specific 404 texts, as the spec words them (response descriptions / examples).
EXPERIMENT_NOT_FOUND = "Experiment not found."
HOLDOUT_NOT_FOUND = "Holdout not found."
LAYER_NOT_FOUND = "Layer not found."
SEGMENT_NOT_FOUND = "Segment not found."
TAG_NOT_FOUND = "Tag not found. The requested resource could not be found."
FORBIDDEN = "Forbidden resource"
TOO_MANY_REQUESTS = "Too Many Requests"
BAD_REQUEST_EXCEPTION = "Bad Request Exception"


class ApiError(Exception):
    """An error response: HTTP ``status``, ``message`` and optional validation ``errors``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body the API sends for this error."""
        body: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, message={self.message!r}, errors={self.errors!r})"


def invalid_request(message: str = INVALID_REQUEST) -> ApiError:
    """400 with the generic message (bad paging parameters, unparsable JSON, ...)."""
    return ApiError(400, message)


def name_in_use() -> ApiError:
    """400 "Name is already in use": duplicate create (the API has no 409)."""
    return ApiError(400, NAME_IN_USE)


def not_found(message: str = NOT_FOUND) -> ApiError:
    """404 with the generic message unless the spec gives an entity-specific one."""
    return ApiError(404, message)


def unauthorized(key: str | None) -> ApiError:
    """401 with the exact documented text; the real API echoes the key it was sent."""
    shown = "undefined" if key is None else key
    return ApiError(
        401,
        "This endpoint only accepts an active CONSOLE key, but an invalid key was sent. "
        f"Key: {shown}",
    )


def bad_field(prop: str, message: str) -> ApiError:
    """A validation 400 about one field, for checks beyond the DTO shape (references...)."""
    return validation_failed([{"property": prop, "errorMessage": message}])


def validation_failed(errors: list[dict[str, str]]) -> ApiError:
    """400 "Bad Request Exception" with ``errors: [{property, errorMessage}]``."""
    return ApiError(400, BAD_REQUEST_EXCEPTION, errors=errors)
