"""Error types shared by every part, and the OpenAI-style error body.

One base class carries an HTTP status; one function maps a status to the
OpenAI error `type`, as upstream's simulator does.
"""

from __future__ import annotations

from typing import Any

import orjson


class ConfigError(Exception):
    """Invalid flag, YAML key or environment value; the message names it and the rule."""


class LlmdError(Exception):
    """An error that reaches a client: HTTP status, message and optional `param`."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def error_type(status: int) -> str:
    """OpenAI error `type` for an HTTP status (upstream's mapping)."""
    if status == 400:
        return "BadRequestError"
    if status == 401:
        return "AuthenticationError"
    if status == 403:
        return "PermissionDeniedError"
    if status == 404:
        return "NotFoundError"
    if status == 422:
        return "UnprocessableEntityError"
    if status == 429:
        return "RateLimitError"
    if status >= 500:
        return "InternalServerError"
    return "APIConnectionError"


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI-style error object: `{"error": {message, type, param, code}}`."""
    inner: dict[str, Any] = {"message": message, "type": error_type(status), "param": param}
    if status:
        inner["code"] = status
    return {"error": inner}


def error_json(status: int, message: str, param: str | None = None) -> bytes:
    """The error body serialised as compact JSON bytes."""
    return orjson.dumps(error_body(status, message, param))


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (`\\n`, `\\x1b`), so an
    error that quotes a user's value stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
