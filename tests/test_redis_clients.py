"""Redis behind Sentinel: the settings it takes, the failover watch, retries, readiness, the lease epoch."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from common import metrics, publish, redis_clients
from hearo import health
from queues import leases, services
from queues.models import Registration

ROOT = Path(__file__).resolve().parent.parent


def redis_settings(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HEARO_", "DATABASE_URL", "REDIS_", "CELERY_"))}
    code = (
        "import json, hearo.settings as s; print(json.dumps({'layer': s.CHANNEL_LAYERS['default'], "
        "'cache': s.CACHES['default'], 'broker': s.CELERY_BROKER_URL, "
        "'transport': getattr(s, 'CELERY_BROKER_TRANSPORT_OPTIONS', None), 'inprocess': s.HEARO_INPROCESS_MATCHER}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=60
    )


def test_sentinels_switch_every_client_to_discovery_and_celery_to_a_sentinel_broker():
    result = redis_settings(REDIS_SENTINELS="10.0.0.1:26379, sentinel2:26380", REDIS_SENTINEL_MASTER="hearo")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["layer"]["BACKEND"] == "realtime.layers.WaitingRedisChannelLayer"
    assert found["layer"]["CONFIG"]["hosts"][0]["address"] == "sentinel://hearo"
    assert found["cache"]["OPTIONS"]["pool_class"] == "common.redis_clients.CachePool"
    assert found["broker"] == "sentinel://10.0.0.1:26379;sentinel://sentinel2:26380"
    assert found["transport"] == {"master_name": "hearo"}
    assert found["inprocess"] is False  # Celery does the matching, as with REDIS_URL


def test_the_sentinel_master_defaults_to_mymaster():
    result = redis_settings(REDIS_SENTINELS="127.0.0.1:26379")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["transport"] == {"master_name": "mymaster"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_URL": "redis://127.0.0.1:6379/0"}, "REDIS_URL"),
        ({"REDIS_SENTINELS": "127.0.0.1"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "127.0.0.1:26379,:1"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "127.0.0.1:99999"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINEL_MASTER": "mymaster"}, "REDIS_SENTINEL_MASTER"),
    ],
)
def test_a_bad_redis_combination_fails_at_startup_naming_the_variable(env, named):
    result = redis_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr.splitlines()[-1]


def test_the_watch_counts_a_new_primary_as_a_failover_with_its_recovery_time():
    watch = redis_clients.PrimaryWatch()
    before = metrics.redis_failovers._value.get()
    watch.connected(("10.0.0.1", 6379))
    watch.connected(("10.0.0.1", 6379))
    assert watch.failovers == 0 and metrics.redis_failovers._value.get() == before
    watch.lost()
    assert watch.lost_at is not None
    watch.connected(("10.0.0.2", 6379))
    assert watch.failovers == 1 and watch.lost_at is None
    assert metrics.redis_failovers._value.get() == before + 1


def test_a_publish_is_retried_while_redis_is_unreachable_and_sent_once(monkeypatch):
    sent, failures = [], [RedisConnectionError("refused"), RedisConnectionError("No master found")]

    def send(group, message):
        if failures:
            raise failures.pop(0)
        sent.append((group, message))

    monkeypatch.setattr(publish, "_send", send)
    publish.deliver("customer.x", {"type": "customer.event"})
    assert sent == [("customer.x", {"type": "customer.event"})]


def test_a_publish_gives_up_after_the_retry_window_without_raising(monkeypatch, settings, caplog):
    settings.HEARO_PUBLISH_RETRY_SECONDS = 0

    def send(group, message):
        raise RedisConnectionError("refused")

    monkeypatch.setattr(publish, "_send", send)
    publish.deliver("customer.x", {"type": "customer.event"})
    assert "Redis unreachable" in caplog.text


class FakeHub:
    def __init__(self, on) -> None:
        self.subscribed_to = on


def test_readiness_names_a_node_whose_hub_is_not_on_the_primary_the_sentinels_name(monkeypatch):
    monkeypatch.setattr(redis_clients, "primary_named", lambda: ("127.0.0.1", 7001))
    monkeypatch.setattr(redis_clients, "watch", redis_clients.PrimaryWatch())
    monkeypatch.setattr(health, "hubs_running", lambda: [FakeHub(("127.0.0.1", 7000))])
    with pytest.raises(RuntimeError, match=r"hub is on 127\.0\.0\.1:7000; the sentinels name 127\.0\.0\.1:7001"):
        health._check_redis_primary()
    monkeypatch.setattr(health, "hubs_running", lambda: [FakeHub(("127.0.0.1", 7001))])
    health._check_redis_primary()  # following: ready
    redis_clients.watch.lost()
    with pytest.raises(RuntimeError, match="lost the Redis primary"):
        health._check_redis_primary()


def test_readiness_checks_the_primary_only_behind_sentinels(settings):
    assert "redisPrimary" not in health.checks()
    settings.REDIS_SENTINELS = (("127.0.0.1", 26379),)
    assert "redisPrimary" in health.checks()


@pytest.mark.django_db
def test_after_a_failover_the_sweep_renews_instead_of_expiring_then_expires_as_usual(monkeypatch):
    registration = services.registration_join(display_name="Mina").registration
    leases.lease_drop("registration", registration.id)  # the promoted replica never got the renewal
    Registration.objects.filter(pk=registration.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases.leases_mark_intact()
    assert leases.leases_intact()

    monkeypatch.setattr(redis_clients, "server_id", lambda: "run-id-of-the-promoted-replica")
    assert not leases.leases_intact()  # the epoch names the old primary
    assert services.registration_expire_ghosts() == []
    registration.refresh_from_db()
    assert registration.status == "WAITING" and registration.lease_expires_at > timezone.now()

    assert leases.leases_intact()  # marked with the new server: the next sweeps judge leases again
    later = timezone.now() + timedelta(seconds=3600)
    assert [r.id for r in services.registration_expire_ghosts(now=later)] == [registration.id]


def test_every_cache_backend_of_a_process_shares_one_redis_pool(redis_url):
    """Django builds a cache backend per thread and per asyncio context (each ASGI request): not a pool each."""
    from django.core.cache import caches

    def pool_of(backend):
        backend.get("pool-probe")  # the client and its pool are made on first use
        return backend._cache.get_client(write=True).connection_pool

    first, second = caches.create_connection("default"), caches.create_connection("default")
    assert first is not second
    pool = pool_of(first)
    assert pool_of(second) is pool
    in_use = len(pool._available_connections) + len(pool._in_use_connections)
    for _ in range(20):
        pool_of(caches.create_connection("default"))
    assert len(pool._available_connections) + len(pool._in_use_connections) == in_use  # no new connection each
