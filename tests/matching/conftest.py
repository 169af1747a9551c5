"""Matching fixtures: counselors on shift, waiting customers, recorded pass requests.

Event triggers are off in these tests unless a test asks for them: a join
must not reach out to Celery (or a loop that is not running) when the test
is about something else. ``requested`` records the requests instead, and the
Celery test turns the real trigger back on.
"""

import pytest
from rest_framework.test import APIClient

from matching import counselors, matcher, triggers
from matching.models import Counselor, Match
from queues import services as queue_services
from queues.models import Registration


@pytest.fixture(autouse=True)
def _no_event_triggers(settings):
    settings.HEARO_MATCH_ON_EVENTS = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins, weak on purpose


@pytest.fixture
def requested(monkeypatch) -> list[str]:
    """Record every matcher pass requested (instead of running one)."""
    calls: list[str] = []

    def request(*, after: float = 0) -> None:
        calls.append(f"pass after {after:g} s" if after else "pass")

    monkeypatch.setattr(triggers, "request_match_pass", request)
    return calls


@pytest.fixture
def on_shift(db):
    """Create a counselor and set its status through the service (lease included)."""
    made = iter(range(1000))

    def _on_shift(status: str = Counselor.Status.AVAILABLE, name: str = "") -> Counselor:
        username = name or f"counselor{next(made)}"
        counselor = counselors.counselor_create(username=username, password="s3cret-pass-1", display_name=username)
        if status != Counselor.Status.OFFLINE:
            counselor = counselors.counselor_set_status(counselor=counselor, status=status)
        return counselor

    return _on_shift


@pytest.fixture
def waiting(db):
    """Put n customers in the queue; return their visits in rank order."""

    def _waiting(n: int = 1) -> list[Registration]:
        return [queue_services.registration_join(display_name=f"guest{i}").registration for i in range(n)]

    return _waiting


@pytest.fixture
def as_counselor():
    """Return an API client logged in as a given counselor."""

    def _as_counselor(counselor: Counselor) -> APIClient:
        client = APIClient()
        client.force_authenticate(counselor.user)
        return client

    return _as_counselor


@pytest.fixture
def matched(on_shift, join):
    """A customer (joined through the API) matched with a counselor: (bearer token, counselor, match)."""
    counselor = on_shift()
    body = join("Mina")
    matcher.match_pass()
    return body["token"], counselor, Match.objects.select_related("registration__customer").get()
