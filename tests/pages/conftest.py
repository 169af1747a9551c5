"""Fixtures of the browser tests: one real Daphne serving the pages for the whole run."""

import shutil

import pytest
from django.conf import settings

from tests.conftest import need
from tests.pages.browser import CHROMIUM, Site
from tests.support.processes import daphne

SERVER_ENV = {
    # A quick polling tier (and, derived from it, a quick step back up).
    "HEARO_POLL_SECONDS": "1",
    # Beats often enough that a test sees them on every tier.
    "HEARO_HEARTBEAT_SECONDS": "2",
    # Every test joins from 127.0.0.1.
    "HEARO_JOIN_RATE": "1000/m",
    # Match inside Daphne on both backends (with Redis the default is Celery).
    "HEARO_INPROCESS_MATCHER": "1",
}


@pytest.fixture(scope="package")
def site(tmp_path_factory, django_db_setup, django_db_blocker):
    need(bool(shutil.which(CHROMIUM)), f"{CHROMIUM} (apt-get install -y --no-install-recommends chromium)")
    # The server outlives the tests, and the shared fixture that clears leases
    # between tests deletes every Redis key under the cache prefix; with the
    # channel prefix equal to it (as `make test` sets both), that would take
    # the server's channel-layer groups too. Keep them apart.
    cache_prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    env = {**SERVER_ENV, "HEARO_CHANNEL_PREFIX": f"{cache_prefix or 'hearo-test'}-pages-channels"}
    with django_db_blocker.unblock(), daphne(tmp_path_factory.mktemp("pages"), "pages", **env) as (port, _):
        yield Site(f"http://127.0.0.1:{port}")
