"""The errors the bookshop raises: one root, one class per kind of HTTP error answer."""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "ApiError",
    "BadRequest",
    "BookshopError",
    "ConfigurationError",
    "Conflict",
    "MethodNotAllowed",
    "NotFound",
    "ServerError",
    "Unavailable",
    "Unprocessable",
]


class BookshopError(Exception):
    """Root of every error raised by the bookshop."""


class ConfigurationError(BookshopError):
    """A setting (an environment variable, an argument) has a value that cannot work."""


class ApiError(BookshopError):
    """A request that gets an error answer ``{"error": message}`` with ``status``."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def to_json(self) -> dict[str, object]:
        """The answer's body."""
        return {"error": self.message}


class BadRequest(ApiError):
    """The request is malformed: bad JSON, a missing or ill-typed field."""

    status = HTTPStatus.BAD_REQUEST


class NotFound(ApiError):
    """The route, author, book or order does not exist."""

    status = HTTPStatus.NOT_FOUND


class MethodNotAllowed(ApiError):
    """The path exists, but not with this method."""

    status = HTTPStatus.METHOD_NOT_ALLOWED


class Conflict(ApiError):
    """The request is valid but the state forbids it (paying an order that is not pending)."""

    status = HTTPStatus.CONFLICT


class Unprocessable(ApiError):
    """The request is well formed but refers to something that does not exist."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class Unavailable(ApiError):
    """The database cannot be reached or did not answer in time."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ServerError(ApiError):
    """The database rejected what this release did (e.g. a schema the release does not fit)."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR
