"""Faults answered cleanly: a dependency down is a JSON 503 to retry, never a 500 or a hang."""

import pytest
from django.core.cache import caches

from queues.models import Registration

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens on the discard port
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


@pytest.fixture
def redis_down(settings):
    settings.CACHES = DEAD_REDIS
    yield
    caches["default"].close()


def test_join_while_redis_is_down_is_a_json_503_and_writes_nothing(api, redis_down):
    response = api.post("/api/queue/join", {}, format="json")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response["Retry-After"] == "2"
    assert Registration.objects.count() == 0  # the transaction rolled back whole


def test_heartbeat_while_redis_is_down_is_a_json_503(api, join, settings):
    token = join()["token"]
    settings.CACHES = DEAD_REDIS
    try:
        response = api.post("/api/queue/heartbeat", HTTP_AUTHORIZATION=f"Bearer {token}")
    finally:
        caches["default"].close()
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
    "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def redis_restart_empty() -> None:
    """Stop the machine's Redis without saving and start it again (its own start command)."""
    import subprocess
    import time

    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True, timeout=10)
    subprocess.run(REDIS_START, check=True, timeout=10)
    deadline = time.monotonic() + 15
    while subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline, "Redis did not come back"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_a_redis_restart_loses_no_registration_and_clients_resync(tmp_path, redis_url):
    import time

    from websockets.exceptions import ConnectionClosed

    from matching.matcher import match_pass
    from tests.support.processes import daphne
    from tests.support.stomp_ws import StompWs
    from tests.test_server import call

    with daphne(tmp_path) as (port, _):
        joins = [call(port, "POST", "/api/queue/join", body={}) for _ in range(2)]
        assert [s for s, _ in joins] == [201, 201], joins
        ahead, me = (body for _, body in joins)
        client = StompWs(port)
        client.connect_customer(me["token"])
        client.subscribe(f"/topic/queue-rank/{me['customerId']}")
        assert client.json()["rank"] == 2

        redis_restart_empty()
        try:  # the node notices its channel layer went away and drops the socket
            while True:
                client.json(timeout=10)
        except (ConnectionClosed, TimeoutError):
            pass
        client.close()
        match_pass()  # leases are gone with Redis: the sweep must not expire anyone
        assert Registration.objects.filter(status="WAITING").count() == 2

        deadline = time.monotonic() + 20
        while True:  # reconnect as the page would, until the node is healthy again
            try:
                client = StompWs(port)
                client.connect_customer(me["token"])
                client.subscribe(f"/topic/queue-rank/{me['customerId']}")
                assert client.json()["rank"] == 2
                break
            except (ConnectionClosed, OSError, TimeoutError):
                assert time.monotonic() < deadline
                time.sleep(0.5)
        status, _ = call(port, "POST", "/api/queue/cancel", ahead["token"])
        assert status == 200
        pushed = client.json(timeout=10)
        assert (pushed["status"], pushed["rank"]) == ("WAITING", 1)
        client.close()
