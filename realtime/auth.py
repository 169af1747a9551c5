"""Who is on the other end of a connection (sync: called via database_sync_to_async)."""

from dataclasses import dataclass

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
    # The session user Channels' AuthMiddleware found, if any. Only a socket
    # that carried an allowed Origin has one (realtime.routing.CookiesNeedOrigin):
    # header credentials above need no Origin, a cookie does.
    user: object = None


def authenticate(credentials: Credentials) -> Principal:
    """Return the principal behind the credentials, or raise Unauthorized."""
    scheme, _, value = (credentials.authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return customer_principal(value.strip())
    if scheme.lower() == "token" and value.strip():
        return counselor_principal(token_user(value.strip()))
    user = credentials.user
    if user is not None and getattr(user, "is_authenticated", False):
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
