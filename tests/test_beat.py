"""The beat down, as processes: events still match, and /readyz says the beat is missing.

A real Daphne node and a real Celery worker, no beat and no in-process
matcher: a customer joining or a counselor going AVAILABLE triggers a pass
on the worker, so matching goes on. But nothing then runs the periodic pass
(ghost expiry, join timeouts on a quiet queue), so /readyz must stay 503
until a real ``celery beat`` runs; event-driven passes do not count.
"""

import json
import time
import urllib.error
import urllib.request

import pytest

from matching.models import Match
from tests.support.processes import VENV_BIN, Proc, celery_worker, daphne, server_env
from tests.test_cluster import counselor_call, counselor_with_token, wait_for
from tests.test_server import call

pytestmark = pytest.mark.django_db(transaction=True)

# Short, so a stale matcher (3 intervals) and a beat's first run come quickly.
INTERVAL = {"HEARO_MATCH_INTERVAL_SECONDS": "2"}


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def celery_beat(tmp_path) -> Proc:
    """Start the one beat (its schedule file and log in tmp_path)."""
    args = [str(VENV_BIN / "celery"), "-A", "hearo", "beat", "-l", "info", "--schedule", str(tmp_path / "schedule")]
    return Proc(args, server_env(**INTERVAL), tmp_path / "beat.log")


def test_without_a_beat_events_still_match_and_readiness_reports_the_beat_missing(tmp_path, redis_url):
    first, first_key = counselor_with_token("alice")
    second, second_key = counselor_with_token("bob")
    with daphne(tmp_path, **INTERVAL) as (port, _), celery_worker(tmp_path, **INTERVAL):
        # A counselor going AVAILABLE matches the customer already waiting.
        _, waiting = call(port, "POST", "/api/queue/join", body={})
        counselor_call(port, first_key, "/api/counselor/status", {"status": "AVAILABLE"})
        wait_for(lambda: Match.objects.filter(counselor=first).exists(), what="no match on AVAILABLE")
        assert Match.objects.get(counselor=first).registration_id == waiting["registrationId"]

        # A customer joining matches the counselor already AVAILABLE.
        counselor_call(port, second_key, "/api/counselor/status", {"status": "AVAILABLE"})
        _, joining = call(port, "POST", "/api/queue/join", body={})
        wait_for(lambda: Match.objects.filter(counselor=second).exists(), what="no match on join")
        assert Match.objects.get(counselor=second).registration_id == joining["registrationId"]

        # Those passes ran on events; no periodic pass has, so the node is not ready.
        status, body = readyz(port)
        assert status == 503 and body["status"] == "unavailable", body
        assert body["checks"]["matcher"].startswith("failing: no periodic matcher pass")
        assert {name: body["checks"][name] for name in ("database", "cache", "channelLayer")} == {
            "database": "ok",
            "cache": "ok",
            "channelLayer": "ok",
        }

        beat = celery_beat(tmp_path)
        try:
            deadline = time.monotonic() + 30
            while (answer := readyz(port))[0] != 200:
                assert time.monotonic() < deadline, f"never ready with a beat: {answer}\n{beat.output()}"
                time.sleep(0.5)
        finally:
            beat.stop()
    assert answer[1] == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", "channelLayer": "ok", "matcher": "ok"},
    }
