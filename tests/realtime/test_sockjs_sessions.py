"""SockJS session lifetime, in process: a vanished client's STOMP subscriptions are dropped."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator

from queues import services as queue_services
from realtime.hub import get_hub
from realtime.sockjs.http import SockJSApp
from realtime.sockjs.services import Service, StompHandler

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def http_scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": b"", "headers": []}


async def post(app, path: str, body: bytes = b"") -> ApplicationCommunicator:
    comm = ApplicationCommunicator(app, http_scope("POST", path))
    await comm.send_input({"type": "http.request", "body": body, "more_body": False})
    return comm


async def read_body(comm: ApplicationCommunicator) -> str:
    message = await comm.receive_output(3)
    if message["type"] == "http.response.start":
        message = await comm.receive_output(3)
    return message.get("body", b"").decode()


async def frames_until(comm: ApplicationCommunicator, needle: str) -> str:
    seen = ""
    while needle not in seen:
        seen += await read_body(comm)
    return seen


async def test_a_vanished_clients_session_times_out_and_its_subscriptions_go(sjoin):
    joined = await sjoin()
    service = Service("/ws/sockjs", StompHandler, disconnect_delay=0.2)
    app = SockJSApp([service])
    base = "/ws/sockjs/000/vanishing"
    stream = await post(app, base + "/xhr_streaming")
    assert (await read_body(stream)).startswith("hhhh")
    assert await read_body(stream) == "o\n"

    connect = f"CONNECT\naccept-version:1.2\nAuthorization:Bearer {joined.token}\n\n\x00"
    customer_id = joined.registration.customer.customer_id
    subscribe = f"SUBSCRIBE\nid:s\ndestination:/topic/queue-rank/{customer_id}\n\n\x00"
    for frame in (connect, subscribe):
        sent = await post(app, base + "/xhr_send", json.dumps([frame]).encode())
        assert (await sent.receive_output(3))["status"] == 204
    seen = await frames_until(stream, "MESSAGE")
    assert "CONNECTED" in seen and '\\"rank\\":1' in seen
    hub = await get_hub()
    assert list(hub.customers) == [joined.registration.id]

    await stream.send_input({"type": "http.disconnect"})  # the browser tab is gone
    for _ in range(100):  # the session outlives its receiver by disconnect_delay, then goes
        if not hub.customers:
            break
        await asyncio.sleep(0.05)
    assert hub.customers == {}
    assert service.registry.get("vanishing") is None
    # The queue moving now reaches nobody and breaks nothing.
    await database_sync_to_async(queue_services.registration_join)()
    assert await hub.refresh() == 0
