"""Password-guessing lock-out for POST /api/auth/token and the /accounts/login/ and /admin/login/ forms.

Failures are counted with django-ratelimit in the Django cache (Redis when
configured, so every node sees the same counts) under two keys: the username
tried and the client address. Once either has HEARO_LOGIN_FAILURES_PER_USERNAME
(or ..._PER_ADDRESS) failures in its window, every attempt on that key is
refused with 429 until the window ends, the right password included: a
guesser must not learn that it just found it. Windows are fixed (15 minutes by
default, with a per-key offset, django-ratelimit's own), and only failures
count: a success resets nothing, so one user's good login never wipes another's
(or the guesser's own address) record.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django_ratelimit.core import get_usage

from common.clientaddr import request_client_address
from common.errors import DomainError

log = logging.getLogger(__name__)


class TooManyAttempts(DomainError):
    code = "too_many_attempts"
    status = 429


@dataclass(frozen=True)
class _Limit:
    kind: str  # "username" or "address": what the log line says was locked
    setting: str  # the django-ratelimit rate, e.g. "5/15m"


LIMITS = (
    _Limit("username", "HEARO_LOGIN_FAILURES_PER_USERNAME"),
    _Limit("address", "HEARO_LOGIN_FAILURES_PER_ADDRESS"),
)


def _normalised(username: str) -> str:
    # "Alice" and " alice" are one account to a guesser; count them together.
    return (username or "").strip().lower()


def _usage(request, limit: _Limit, username: str, *, increment: bool) -> dict | None:
    value = _normalised(username) if limit.kind == "username" else request_client_address(request)
    return get_usage(
        request,
        group=f"login-failures:{limit.kind}",
        key=lambda group, request: value,
        rate=getattr(settings, limit.setting),
        increment=increment,
    )


def login_retry_after(request, username: str) -> int | None:
    """Return the seconds until this username and address may try again, or None if they may now."""
    waits = []
    for limit in LIMITS:
        usage = _usage(request, limit, username, increment=False)
        if usage is not None and usage["count"] >= usage["limit"]:
            waits.append(max(1, usage["time_left"]))
    return max(waits) if waits else None


def login_failed(request, username: str) -> None:
    """Count one wrong password; log the lock-out once, on the failure that reaches the limit."""
    for limit in LIMITS:
        usage = _usage(request, limit, username, increment=True)
        if usage is not None and usage["count"] == usage["limit"]:
            fields = {"event": "auth.locked_out", "locked": limit.kind, "client": request_client_address(request)}
            if limit.kind == "username":
                fields["username"] = _normalised(username)
            log.warning("sign-in locked out by %s for %d s", limit.kind, usage["time_left"], extra=fields)


def login_refuse_if_locked(request, username: str) -> None:
    """Raise TooManyAttempts (429, with retryAfter) while the username or the address is locked out."""
    retry_after = login_retry_after(request, username)
    if retry_after is not None:
        raise TooManyAttempts("too many failed sign-ins; try again later", extra={"retryAfter": retry_after})


class LockoutLoginView(auth_views.LoginView):
    """Django's login form under the same lock-out: a plain message and 429 while locked."""

    def post(self, request, *args, **kwargs):
        self.retry_after = login_retry_after(request, request.POST.get("username", ""))
        if self.retry_after is not None:
            return self.locked_out()
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        username = self.request.POST.get("username", "")
        if username and self.request.POST.get("password"):
            login_failed(self.request, username)  # an empty field is a typo, not a guess
        return super().form_invalid(form)

    def locked_out(self):
        form = self.get_form_class()(self.request)  # unbound: the password is not echoed
        response = self.render_to_response(self.get_context_data(form=form, locked_out=True))
        response.status_code = 429
        response["Retry-After"] = str(self.retry_after)
        return response


class AdminLockoutLoginView(LockoutLoginView):
    """The admin site's login under the same lock-out: staff passwords are the ones most worth guessing.

    Routed at /admin/login/ ahead of the admin's own URLs; it renders the admin's
    login page with the context ``AdminSite.login`` gives it.
    """

    authentication_form = AdminAuthenticationForm
    template_name = "admin/login.html"

    def get(self, request, *args, **kwargs):
        if request.user.is_active and request.user.is_staff:
            return redirect("admin:index")  # as AdminSite.login: already in
        return super().get(request, *args, **kwargs)

    def get_default_redirect_url(self) -> str:
        return reverse("admin:index")

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context.update(
            admin.site.each_context(self.request),
            title=_("Log in"),
            subtitle=None,
            app_path=self.request.get_full_path(),
            username=self.request.user.get_username(),
        )
        return context

    def locked_out(self):
        # The admin's template knows no "locked_out" flag; it shows messages.
        messages.error(self.request, _("Too many failed sign-ins. Please wait a few minutes, then try again."))
        return super().locked_out()
