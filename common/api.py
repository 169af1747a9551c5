"""Shared REST plumbing: the error shape, bearer tokens, strict serializers."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from redis.exceptions import RedisError
from rest_framework import exceptions, permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import DomainError, Forbidden

log = logging.getLogger(__name__)


def error_body(code: str, detail, **extra) -> dict:
    return {"error": code, "detail": detail, **extra}


def _drf_code(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ParseError):
        return "malformed_json"
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    if isinstance(exc, exceptions.Throttled):
        return "rate_limited"
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


UNAVAILABLE = (RedisError, OperationalError, InterfaceError)


def exception_handler(exc, context):
    """Turn every error into a 4xx with ``{error, detail}``; domain errors first.

    A dependency that is down (Redis restarting, the database unreachable)
    is a 503 the client can retry, not a 500 and not a hang: the cache's
    socket timeout bounds the wait.
    """
    if isinstance(exc, UNAVAILABLE):
        log.warning("dependency unavailable: %s", exc.__class__.__name__)
        response = Response(error_body("unavailable", "a backing service is down; retry shortly"), status=503)
        response["Retry-After"] = "2"
        return response
    if isinstance(exc, RequestDataTooBig):
        # One line, not the traceback Django's security logger would print.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        log.warning("request body over %d bytes refused", limit, extra={"event": "http.body_too_large"})
        return Response(error_body("too_large", f"the body is limited to {limit} bytes"), status=413)
    if isinstance(exc, DomainError):
        response = Response(error_body(exc.code, exc.detail, **exc.extra), status=exc.status)
        if "retryAfter" in exc.extra:
            response["Retry-After"] = str(exc.extra["retryAfter"])
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's handler500 answers, with JSON under /api/
    detail = exc.detail if isinstance(exc, exceptions.ValidationError) else str(exc.detail)
    response.data = error_body(_drf_code(exc), detail)
    return response


def json_error_view(status: int, code: str, detail: str):
    def view(request, exception=None):
        return JsonResponse(error_body(code, detail), status=status)

    return view


def bearer_token(request) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses fields it does not know (a typo is an error, not a no-op)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of stringifying them."""

    default_error_messages = {"not_a_string": "must be a string"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes only JSON true or false (not "yes", 1 or "on")."""

    default_error_messages = {"not_a_boolean": "must be true or false"}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


class IsStaff(permissions.BasePermission):
    """Django's ``is_staff``, through a session or ``Authorization: Token``."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.is_active)


class StaffAPIView(APIView):
    """Base for the staff-only configuration endpoints.

    Anyone who is not staff gets 403, whether anonymous, a customer with a
    bearer token or a counselor without ``is_staff``: the answer is the same
    "you may not", not an invitation to retry with other credentials. A bad
    ``Token`` is still a 401 (authentication runs first and fails loudly).
    """

    permission_classes = [IsStaff]

    def permission_denied(self, request, message=None, code=None):
        raise Forbidden("staff login required (session or Authorization: Token)", code="staff_only")
