"""Operations: health, readiness, metrics, rate limits, production settings."""

import gc
import os
import subprocess
import sys
import time

import pytest
from django.core.cache import cache

from hearo.health import MATCHER_STAMP_KEY
from tests.test_settings import ROOT

pytestmark = pytest.mark.django_db


def test_healthz_says_the_process_is_up(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_dependency_and_a_stale_matcher(client):
    cache.delete(MATCHER_STAMP_KEY)
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == checks["cache"] == checks["channelLayer"] == "ok"
    assert checks["matcher"].startswith("failing")
    cache.set(MATCHER_STAMP_KEY, time.time())
    assert client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", "channelLayer": "ok", "matcher": "ok"},
    }


def test_metrics_are_prometheus_text_named_hearo(client, join):
    join()
    join()
    body = client.get("/metrics").content.decode()
    assert "hearo_waiting_customers 2.0" in body
    assert "hearo_longest_wait_seconds" in body
    assert 'hearo_counselors{status="AVAILABLE"}' in body
    assert "hearo_fanout_seconds_bucket" in body


def metric_values(client, prefix: str) -> dict[str, float]:
    lines = client.get("/metrics").content.decode().splitlines()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines if line.startswith(prefix))}


def test_metrics_time_every_full_garbage_collection_of_the_process(client):
    full = 'hearo_gc_pause_seconds_count{generation="2"}'
    total = 'hearo_gc_pause_seconds_sum{generation="2"}'
    before = metric_values(client, "hearo_gc_pause_seconds")
    gc.collect()
    gc.collect()
    after = metric_values(client, "hearo_gc_pause_seconds")
    assert after[full] >= before[full] + 2
    assert after[total] > before[total]
    # a histogram: the +Inf bucket holds every pause, and the buckets never decrease
    assert after['hearo_gc_pause_seconds_bucket{generation="2",le="+Inf"}'] == after[full]
    buckets = [v for k, v in after.items() if k.startswith('hearo_gc_pause_seconds_bucket{generation="2"')]
    assert buckets == sorted(buckets)


def test_joining_too_often_from_one_address_is_a_json_429(api, settings):
    settings.HEARO_JOIN_RATE = "3/m"
    codes = [api.post("/api/queue/join", {}, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    response = api.post("/api/queue/join", {}, format="json")
    assert response.json()["error"] == "rate_limited"


def production_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARO_", "SECRET_KEY", "LIVEKIT"))}
    env.update(
        HEARO_PRODUCTION="1",
        SECRET_KEY="k" * 20 + "-a-long-random-production-secret-value-0123456789",
        LIVEKIT_API_SECRET="a-real-livekit-secret-of-enough-length-123",
        ALLOWED_HOSTS="hearo.example",
    )
    env.update(extra)
    return env


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SECRET_KEY", "django-insecure-hearo-development-key-do-not-use-in-production"),
        ("LIVEKIT_API_SECRET", "secret"),
    ],
)
def test_production_refuses_to_start_with_a_development_secret(variable, value):
    result = manage("check", env=production_env(**{variable: value}))
    assert result.returncode != 0
    assert variable in result.stderr


def test_only_the_periodic_pass_stamps_readiness(client, settings):
    from matching.matcher import match_pass
    from matching.tasks import match_pass_task

    cache.delete(MATCHER_STAMP_KEY)
    match_pass()  # what an event triggers: it runs whether or not the beat is alive
    assert client.get("/readyz").json()["checks"]["matcher"].startswith("failing")
    beat_entry = settings.CELERY_BEAT_SCHEDULE["matching.match_pass"]
    match_pass_task.apply(kwargs=beat_entry["kwargs"])  # the beat's run, as a worker takes it
    assert client.get("/readyz").json()["checks"]["matcher"] == "ok"
