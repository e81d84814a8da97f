"""The seed's error body for every 4xx/5xx response:

    {"statusCode": 400, "message": "Validation failed",
     "errors": [{"field": "sort", "message": "..."}], "timestamp": "...Z", "path": "/v1/markets"}

Hierarchy:  ApiError (status, message, errors)
              └─ ValidationFailed (400, field errors)
"""

from __future__ import annotations

import dataclasses

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.encode import JSONBody, now_iso

log = structlog.get_logger("api")

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}


class ValidationFailed(ApiError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(400, "Validation failed", errors)


def not_found(what: str, field: str = "") -> ApiError:
    return ApiError(404, f"{what} not found", [FieldError(field, f"{what} not found")] if field else [])


def error_body(status: int, message: str, errors: list[FieldError], path: str) -> dict[str, object]:
    return {
        "statusCode": status,
        "message": message,
        "errors": [{"field": e.field, "message": e.message} for e in errors],
        "timestamp": now_iso(),
        "path": path,
    }


def error_response(
    status: int,
    message: str,
    path: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return JSONBody(error_body(status, message, errors or [], path), status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, request.url.path, exc.errors, exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else _REASONS.get(exc.status_code, "Error")
    if exc.status_code == 404:
        message = f"no route for {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response(exc.status_code, message, request.url.path, headers=dict(exc.headers or {}))


async def server_error_handler(request: Request, exc: Exception) -> Response:
    log.error("request_failed", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    return error_response(500, "Internal server error", request.url.path)
