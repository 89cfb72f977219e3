"""Errors the server answers with, and why the model is not ready."""

from __future__ import annotations


class RequestError(Exception):
    """A client error: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


class NotReady(Exception):
    """The model cannot serve: ``reason`` is one CamelCase word (as in conditions)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
