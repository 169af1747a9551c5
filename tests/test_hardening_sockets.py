"""Hardening of the sockets: hostile first messages, sockets that never authenticate, a quiet client's lease."""

import asyncio
import ipaddress
import json

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from hearo.asgi import application
from queues import services
from queues.models import Registration
from realtime.hub import reset_hub
from tests.realtime.conftest import ORIGIN, StompClient

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
S = Registration.Status


OPEN: list[WebsocketCommunicator] = []


@pytest_asyncio.fixture(autouse=True)
async def fresh_layer():
    channel_layers.backends.clear()
    yield
    while OPEN:  # release every socket's slots: the per-process counts outlive the test
        await OPEN.pop().disconnect()
    await reset_hub()
    channel_layers.backends.clear()


def raw(address: str | None = None, forwarded: str | None = None) -> WebsocketCommunicator:
    headers = [ORIGIN, *([(b"x-forwarded-for", forwarded.encode())] if forwarded else [])]
    ws = WebsocketCommunicator(application, "/ws/raw", headers=headers)
    if address is not None:
        ws.scope["client"] = (address, 50000)  # the peer, as Daphne reports it
    OPEN.append(ws)
    return ws


async def until_closed(ws: WebsocketCommunicator, timeout: float = 5) -> tuple[list[str], int]:
    """Return the texts the server sent and its close code."""
    texts = []
    while True:
        message = await ws.receive_output(timeout)
        if message["type"] == "websocket.close":
            return texts, message.get("code", 1000)
        if message["type"] == "websocket.send":
            texts.append(message.get("text") or message.get("bytes", b"").decode())


async def opened(ws: WebsocketCommunicator) -> bool:
    """Connect; True if the server accepted and did not close at once."""
    connected, _ = await ws.connect()
    return connected and await ws.receive_nothing(0.3)


async def join():
    return await database_sync_to_async(services.registration_join)(display_name="")


# --- deeply nested JSON as the first raw message ----------------------------------------------


async def test_deeply_nested_json_as_the_first_raw_message_is_a_protocol_error_not_a_crash():
    ws = raw()
    assert (await ws.connect())[0]
    await ws.send_to(text_data="[" * 4000)
    texts, code = await until_closed(ws)  # a crashed consumer would raise here instead
    assert json.loads(texts[0])["error"] == "malformed JSON"
    assert code not in (1011, 4011) and code == 4007


# --- sockets that never authenticate ---------------------------------------------------------------


async def test_a_raw_socket_that_never_authenticates_is_closed_at_the_deadline(settings):
    settings.HEARO_AUTH_TIMEOUT_SECONDS = 1
    ws = raw("192.0.2.1")
    assert (await ws.connect())[0]
    texts, code = await until_closed(ws)
    assert json.loads(texts[-1]) == {
        "type": "error",
        "error": "authentication timeout",
        "detail": "authenticate within 1 s of opening",
    }
    assert code == 4008


async def test_a_stomp_socket_that_never_sends_connect_gets_error_then_close(settings):
    settings.HEARO_AUTH_TIMEOUT_SECONDS = 1
    client = StompClient()
    await client.open()
    error = await client.frame(timeout=5)
    assert (error.command, error.get("message")) == ("ERROR", "authentication timeout")
    assert await client.closed_code() == 4008


async def test_a_sockjs_websocket_that_never_authenticates_is_closed(settings):
    settings.HEARO_AUTH_TIMEOUT_SECONDS = 1
    ws = WebsocketCommunicator(application, "/ws/sockjs/000/abcdefgh/websocket", headers=[ORIGIN])
    assert (await ws.connect())[0]
    texts, _ = await until_closed(ws)
    assert texts[0] == "o"
    assert any("ERROR" in text and "authentication timeout" in text for text in texts), texts


async def test_a_socket_that_authenticates_in_time_stays_open(settings):
    settings.HEARO_AUTH_TIMEOUT_SECONDS = 1
    joined = await join()
    ws = raw("192.0.2.1")
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "auth", "token": joined.token})
    assert (await ws.receive_json_from(3))["status"] == "WAITING"
    assert await ws.receive_nothing(1.5)
    await ws.disconnect()


async def test_one_address_may_hold_only_so_many_unauthenticated_sockets(settings):
    settings.HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS = 2
    first, second, third = raw("192.0.2.7"), raw("192.0.2.7"), raw("192.0.2.7")
    assert await opened(first) and await opened(second)
    await third.connect()
    texts, code = await until_closed(third)
    assert json.loads(texts[-1])["error"] == "too many connections" and code == 4008
    assert await opened(raw("192.0.2.8"))  # another address is not affected
    joined = await join()
    await first.send_json_to({"type": "auth", "token": joined.token})  # authenticating frees its slot
    assert (await first.receive_json_from(3))["status"] == "WAITING"
    assert await opened(raw("192.0.2.7"))


async def test_behind_a_trusted_proxy_the_cap_counts_each_forwarded_client(settings):
    settings.HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS = 1
    settings.HEARO_TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)
    assert await opened(raw("10.0.0.2", "198.51.100.1"))
    assert await opened(raw("10.0.0.2", "198.51.100.2"))  # another customer behind the same nginx
    again = raw("10.0.0.2", "198.51.100.1")
    await again.connect()
    texts, _ = await until_closed(again)
    assert json.loads(texts[-1])["error"] == "too many connections"


async def test_an_untrusted_peer_cannot_dodge_the_cap_with_x_forwarded_for(settings):
    settings.HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS = 1
    settings.HEARO_TRUSTED_PROXIES = ()
    assert await opened(raw("203.0.113.5", "198.51.100.1"))
    dodge = raw("203.0.113.5", "198.51.100.2")
    await dodge.connect()
    texts, _ = await until_closed(dodge)
    assert json.loads(texts[-1])["error"] == "too many connections"


# --- a quiet STOMP customer is present while its socket is open -----------------------------------


async def expire_ghosts() -> list[int]:
    return [r.id for r in await database_sync_to_async(services.registration_expire_ghosts)()]


async def status(registration_id: int) -> str:
    return (await database_sync_to_async(Registration.objects.get)(id=registration_id)).status


async def test_a_quiet_stomp_customer_outlives_its_lease_while_the_socket_is_open(settings):
    settings.HEARO_LEASE_SECONDS, settings.HEARO_HEARTBEAT_SECONDS = 3, 1
    joined = await join()
    client = StompClient()
    connected = await client.connect(Authorization=f"Bearer {joined.token}")  # heart-beat 0,0
    assert connected.command == "CONNECTED"
    customer_id = joined.registration.customer.customer_id
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    assert (await client.json())["status"] == "WAITING"
    await asyncio.sleep(4.5)  # past the lease, without a frame from the client
    assert await expire_ghosts() == []
    assert await status(joined.registration.id) == S.WAITING
    await client.close()
    await asyncio.sleep(4.5)  # the socket is gone and its evidence with it
    assert await expire_ghosts() == [joined.registration.id]
    assert await status(joined.registration.id) == S.EXPIRED
