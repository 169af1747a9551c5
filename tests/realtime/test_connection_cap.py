"""The per-customer connection cap holds across nodes; a dead node's sockets stop counting."""

import secrets
import time

import pytest
import redis.asyncio

from realtime import connection_cap
from realtime.connection_cap import slot_acquire, slot_release
from tests.support.processes import daphne
from tests.support.stomp_ws import StompWs
from tests.test_server import call

SLOT_SECONDS = 6


@pytest.mark.asyncio
async def test_a_slot_its_node_stopped_vouching_for_is_pruned_and_a_fresh_one_counts(redis_url, settings):
    settings.HEARO_MAX_CONNECTIONS_PER_CUSTOMER = 1
    customer_id = f"customer_{secrets.token_urlsafe(12)}"
    client = redis.asyncio.Redis.from_url(redis_url)
    stale = time.time() - settings.HEARO_CONNECTION_SLOT_SECONDS - 1
    await client.zadd(connection_cap._key(customer_id), {"socket-of-a-killed-node": stale})
    slot = await slot_acquire(customer_id)
    assert slot is not None  # the dead node's socket no longer counts
    assert await slot_acquire(customer_id) is None  # this live one does
    await slot_release(slot)
    again = await slot_acquire(customer_id)
    assert again is not None
    await slot_release(again)
    await client.aclose()


@pytest.mark.asyncio
async def test_a_node_vouches_for_its_sockets_in_one_script_call_and_never_revives_a_released_one(redis_url, settings):
    from tests.support.redis_monitor import redis_monitor, sent

    client = redis.asyncio.Redis.from_url(redis_url)
    slots = [await slot_acquire(f"customer_{secrets.token_urlsafe(12)}") for _ in range(3)]
    node = connection_cap._node()
    gone = slots[0]
    await client.zrem(gone.key, gone.member)  # released on another task meanwhile
    await client.zadd(slots[1].key, {slots[1].member: 1.0})  # last vouched for long ago
    now = time.time()
    async with redis_monitor(redis_url) as lines:
        await node.vouch([(s.member, s.key) for s in slots], 120)
    calls = [line for s in slots for line in sent(lines, s.member)]
    assert len(set(calls)) == 1 and calls[0].startswith('"EVALSHA"')  # one call names all three
    assert await client.zscore(gone.key, gone.member) is None  # not added back
    for slot in slots[1:]:
        assert await client.zscore(slot.key, slot.member) >= now - 1
        assert 110 <= await client.ttl(slot.key) <= 120
    for slot in slots[1:]:
        await slot_release(slot)
    await client.aclose()


def connect_outcome(port: int, token: str) -> str:
    """Open a STOMP connection; return the CONNECT answer (closing a refused socket)."""
    client = StompWs(port)
    frame = client.connect_customer(token)
    if frame.command != "CONNECTED":
        client.close()
        return f"{frame.command} {frame.get('message')}"
    client.close()
    return frame.command


@pytest.mark.django_db(transaction=True)
def test_the_cap_holds_across_nodes_and_a_killed_nodes_sockets_stop_counting(tmp_path, redis_url):
    env = {"HEARO_MAX_CONNECTIONS_PER_CUSTOMER": "2", "HEARO_CONNECTION_SLOT_SECONDS": str(SLOT_SECONDS)}
    with daphne(tmp_path, "node-a", **env) as (port_a, node_a), daphne(tmp_path, "node-b", **env) as (port_b, _):
        _, joined = call(port_a, "POST", "/api/queue/join", body={})
        token = joined["token"]
        held = [StompWs(port_a), StompWs(port_b)]  # one socket on each node: the cap is full
        assert [client.connect_customer(token).command for client in held] == ["CONNECTED", "CONNECTED"]
        time.sleep(SLOT_SECONDS + 1)  # longer than an unrefreshed slot lives: live nodes keep vouching
        full = "ERROR too many connections"
        assert (connect_outcome(port_a, token), connect_outcome(port_b, token)) == (full, full)

        node_a.kill()  # SIGKILL: node A never releases its socket's slot
        assert connect_outcome(port_b, token) == full  # it still counts until its slot runs out
        deadline = time.monotonic() + SLOT_SECONDS + 5
        while (outcome := connect_outcome(port_b, token)) == full:
            assert time.monotonic() < deadline, "the killed node's slot never expired"
            time.sleep(0.5)
        assert outcome == "CONNECTED"
        held[1].close()
