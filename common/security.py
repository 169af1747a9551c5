"""Response headers and log hygiene for the pages: the Content-Security-Policy, one-line refusals.

The pages carry no inline script: data reaches them through ``json_script``
(a ``type="application/json"`` block the policy does not run) and the code is
static files, so ``script-src 'self'`` with no ``'unsafe-inline'`` holds.
"""

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost


def _livekit_origins() -> list[str]:
    """Return the call server's origins: its signalling socket and the HTTP twin livekit-client also calls."""
    parts = urlsplit(settings.LIVEKIT_URL)
    if not parts.netloc:
        return []
    secure = parts.scheme in ("wss", "https")
    return [f"{'wss' if secure else 'ws'}://{parts.netloc}", f"{'https' if secure else 'http'}://{parts.netloc}"]


def content_security_policy(host: str | None) -> str:
    """Return the policy for a page served on ``host``."""
    # 'self' covers ws:/wss: to the page's own host in CSP 3, but not every
    # browser in the field implements that part; name them.
    own = [f"ws://{host}", f"wss://{host}"] if host else []
    connect = ["'self'", *own, *_livekit_origins()]
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        # livekit-client plays the remote audio track from a MediaStream.
        "media-src": ["'self'", "blob:"],
        "connect-src": connect,
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    """Add the policy to every HTML page but the admin's.

    Django's admin (staff only) ships inline styles and scripts of its own on
    some pages; it keeps Django's defaults rather than a policy that breaks it.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        html = response.get("Content-Type", "").startswith("text/html")
        if html and "Content-Security-Policy" not in response and not request.path.startswith("/admin/"):
            response["Content-Security-Policy"] = content_security_policy(_host(request))
        return response


def _host(request) -> str | None:
    try:
        return request.get_host()
    except DisallowedHost:
        return None  # already answered 400; the policy just names no socket host


class OneLineRefusals(logging.Filter):
    """Log a refused request (bad Host, oversized body: django.security.*) as one line, no traceback.

    Django logs every SuspiciousOperation with its traceback; for a scanner's
    bad Host header that is dozens of lines of our own stack per request.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
            record.event = getattr(record, "event", "http.refused")
        return True
