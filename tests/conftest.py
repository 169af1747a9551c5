"""Shared fixtures: API clients, captured publishes, service requirements.

In CI (CI=true) a missing PostgreSQL or Redis is a failure, never a skip.
"""

import os

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, what: str) -> None:
    """Skip locally when a real service is not configured; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not configured (set it to run this test; CI always does)")


@pytest.fixture
def postgres():
    need(settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "DATABASE_URL=postgres://…")


@pytest.fixture
def redis_url():
    need(bool(settings.REDIS_URL), "REDIS_URL")
    return settings.REDIS_URL


@pytest.fixture(autouse=True)
def _matcher_out_of_the_way(settings):
    """No test process runs a matcher unless the test asks for one.

    Real server processes started by tests (Daphne, Celery) read the
    environment, not these settings, and match as in production.
    """
    settings.HEARO_MATCH_ON_EVENTS = False
    settings.HEARO_INPROCESS_MATCHER = False


@pytest.fixture(autouse=True)
def _no_gc_freeze_in_the_test_process(settings):
    """The test process never freezes its own heap (realtime/gc_policy.py; its tests turn it on).

    Server processes the tests start read the environment and run the policy as in production.
    """
    settings.HEARO_GC_FREEZE = False


def cache_forget_all() -> None:
    """Drop every key of this test run's cache (not FLUSHDB: others may share the Redis database)."""
    if settings.REDIS_URL:
        client = cache._cache.get_client(write=True)
        # The cache's own keys only: the channel layer may share the prefix.
        for key in client.scan_iter(cache.make_key("*")):
            client.delete(key)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_leases():
    """Start every test with no leases (ids may be reused after a rollback)."""
    cache_forget_all()
    from matching.selectors import wait_stats_forget
    from queues.leases import leases_mark_intact

    leases_mark_intact()  # as in a running system; a test that restarts Redis clears it

    wait_stats_forget()


class Published(list):
    """Every (group, message) that reached the channel-layer bridge."""

    def bodies(self, group: str) -> list[dict]:
        return [m.get("body", m) for g, m in self if g == group]

    def groups(self) -> list[str]:
        return [g for g, _ in self]


@pytest.fixture
def published(monkeypatch):
    from common import publish

    sent = Published()
    monkeypatch.setattr(publish, "deliver", lambda group, message: sent.append((group, message)))
    return sent


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def join(api, django_capture_on_commit_callbacks):
    """Join the queue through the API; return the response body."""

    def _join(name: str = "", token: str | None = None, **extra):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        body = {"displayName": name} if name else {}
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/queue/join", body, format="json", **headers)
        assert response.status_code in (200, 201), response.content
        return response.json()

    return _join


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def counselor(db):
    from matching import counselors

    return counselors.counselor_create(username="alice", password="s3cret-pass-1", display_name="Alice")


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Let the test database be dropped: end sessions left by worker threads."""
    yield
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
