"""The heartbeat's bare ASGI route answers like the Django view, without the database on a hit."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator

from hearo.asgi import application
from queues import fastpath, leases, services

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def beat(token: str | None) -> tuple[int, dict]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    response = await HttpCommunicator(application, "POST", fastpath.PATH, headers=headers).get_response()
    return response["status"], json.loads(response["body"])


async def test_a_beat_renews_the_lease_from_the_cache_alone(monkeypatch):
    joined = await database_sync_to_async(services.registration_join)()
    await database_sync_to_async(leases.lease_drop)("registration", joined.registration.id)

    def no_database(**kwargs):
        raise AssertionError("the hit path must not read the database")

    monkeypatch.setattr(fastpath, "registration_by_token", no_database)
    status, body = await beat(joined.token)
    assert status == 200 and body["leaseExpiresAt"] > 0
    alive = await database_sync_to_async(leases.lease_alive)("registration", [joined.registration.id])
    assert alive == {joined.registration.id}


async def test_a_cache_miss_falls_back_to_the_database_and_answers_the_same():
    joined = await database_sync_to_async(services.registration_join)()
    from django.core.cache import cache

    await database_sync_to_async(cache.delete)(leases.token_key(joined.registration.token_hash))
    status, body = await beat(joined.token)
    assert status == 200 and body["leaseExpiresAt"] > 0


@pytest.mark.parametrize("token", [None, "forged"])
async def test_missing_or_unknown_tokens_are_a_json_401(token):
    status, body = await beat(token)
    assert status == 401 and body["error"] == "unauthorized"


async def test_a_cancelled_visit_is_a_json_409_at_once():
    joined = await database_sync_to_async(services.registration_join)()
    await database_sync_to_async(services.registration_cancel)(registration=joined.registration)
    status, body = await beat(joined.token)
    assert (status, body) == (409, {"error": "not_active", "detail": "registration is CANCELLED"})


async def test_a_beat_while_redis_is_unreachable_is_the_json_503_with_retry_after(monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def unreachable(token_hash):
        raise RedisConnectionError("No master found for 'mymaster'")  # a failover in progress

    monkeypatch.setattr(leases, "abeat", unreachable)
    headers = [(b"authorization", b"Bearer some-token")]
    response = await HttpCommunicator(application, "POST", fastpath.PATH, headers=headers).get_response()
    assert response["status"] == 503
    assert json.loads(response["body"])["error"] == "unavailable"
    assert (b"retry-after", b"2") in response["headers"]
