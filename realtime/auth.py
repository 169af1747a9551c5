"""Who is on the other end of a connection (sync: called via database_sync_to_async)."""

from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib import auth as django_auth
from django.http.cookie import parse_cookie
from rest_framework.authtoken.models import Token

from common.errors import DomainError, Unauthorized
from matching.selectors import counselor_for_user
from queues.selectors import registration_by_token
from realtime.destinations import Principal


@dataclass(frozen=True)
class Credentials:
    authorization: str | None = None  # "Bearer <customer token>" or "Token <counselor key>"
    login: str | None = None  # STOMP's login/passcode: HearO ignores them (see realtime.conformance)
    passcode: str | None = None
    # The socket's Django session, not yet read (``socket_session``). Only a
    # socket that carried an allowed Origin has one (realtime.routing.CookiesNeedOrigin):
    # header credentials above need no Origin, a cookie does.
    session: object = None


# Set in a socket's scope when its Origin lets its session cookie count.
COOKIE_AUTH = "hearo.cookie_auth"


def socket_session(scope: dict):
    """Return the session the socket's cookie names (unread: no query until it is asked), or None.

    Channels' AuthMiddlewareStack would build a session and a lazy user for
    every socket, a few KiB each held for the socket's life; customers
    authenticate with a header, so the cookie is looked at only here.
    """
    if not scope.get(COOKIE_AUTH):
        return None
    header = b"; ".join(value for name, value in scope.get("headers", ()) if name == b"cookie")
    key = parse_cookie(header.decode("latin1")).get(settings.SESSION_COOKIE_NAME) if header else None
    if not key:
        return None
    return import_module(settings.SESSION_ENGINE).SessionStore(key)


def authenticate(credentials: Credentials) -> Principal:
    """Return the principal behind the credentials, or raise Unauthorized."""
    scheme, _, value = (credentials.authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return customer_principal(value.strip())
    if scheme.lower() == "token" and value.strip():
        return counselor_principal(token_user(value.strip()))
    if credentials.session is not None:
        # Django's own reading of a login session (the password-change hash included).
        user = django_auth.get_user(SimpleNamespace(session=credentials.session))
        if user.is_authenticated:
            return counselor_principal(user)
    raise Unauthorized("authentication required: Authorization: Bearer <token> or a counselor login")


def customer_principal(token: str) -> Principal:
    registration = registration_by_token(token=token)
    if not registration.is_active:
        raise Unauthorized(f"this visit is {registration.status}; join again")
    return Principal("customer", registration.customer.customer_id, registration.id)


def token_user(key: str):
    try:
        return Token.objects.select_related("user").get(key=key).user
    except Token.DoesNotExist:
        raise Unauthorized("unknown API token") from None


def counselor_principal(user) -> Principal:
    try:
        counselor = counselor_for_user(user=user)
    except DomainError as exc:
        raise Unauthorized(exc.detail) from None
    return Principal("counselor", counselor.counselor_id)
