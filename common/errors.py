"""Domain errors: raised by services and selectors, translated once at the edge.

The REST exception handler turns them into ``{error, detail}`` with their
HTTP status; the consumers turn them into a STOMP ERROR frame or a JSON error.
"""


class DomainError(Exception):
    code = "bad_request"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None, extra: dict | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra or {}


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class TooManyRequests(DomainError):
    code = "rate_limited"
    status = 429
