"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


SUMMARY = (
    "import hearo.settings as s; print(s.DATABASES['default']['ENGINE'], "
    "s.CHANNEL_LAYERS['default']['BACKEND'], s.CACHES['default']['BACKEND'], s.HEARO_LEASE_SECONDS)"
)


def load_settings(code: str = SUMMARY, **env) -> subprocess.CompletedProcess:
    """Import the settings in a fresh process with only ``env`` set; run ``code`` there."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HEARO_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=60
    )


def test_with_nothing_set_it_runs_on_the_embedded_default():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    engine, layer, cache, lease = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert layer == "channels.layers.InMemoryChannelLayer"
    assert cache.endswith("LocMemCache")
    assert lease == "40"


def test_urls_switch_to_postgresql_and_redis():
    result = load_settings(DATABASE_URL="postgres://u@127.0.0.1:5432/x", REDIS_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 0, result.stderr
    engine, layer, cache, _ = result.stdout.split()
    assert engine == "django.db.backends.postgresql"
    assert layer == "realtime.layers.WaitingRedisChannelLayer"  # channels-redis with a waiting pool
    assert cache == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEARO_LEASE_SECONDS", "forty"),
        ("HEARO_HEARTBEAT_SECONDS", "0"),
        ("HEARO_MATCH_INTERVAL_SECONDS", "-5"),
        ("HEARO_POLL_SECONDS", "1.5"),
    ],
)
def test_a_bad_tunable_fails_at_startup_naming_the_variable(name, value):
    result = load_settings(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_heartbeat_must_be_shorter_than_the_lease():
    result = load_settings(HEARO_LEASE_SECONDS="10", HEARO_HEARTBEAT_SECONDS="10")
    assert result.returncode != 0
    assert "HEARO_HEARTBEAT_SECONDS" in result.stderr
