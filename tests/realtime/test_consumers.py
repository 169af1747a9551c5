"""The STOMP and raw-JSON consumers, driven by Channels' WebsocketCommunicator."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from hearo.asgi import application
from queues import services
from queues.models import Registration
from tests.realtime.conftest import ORIGIN

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_it_selects_the_best_stomp_subprotocol_offered(stomp):
    assert await stomp().open() == "v12.stomp"
    assert await stomp(subprotocols=("v10.stomp", "v11.stomp")).open() == "v11.stomp"


async def test_it_accepts_a_client_that_offers_no_subprotocol(stomp):
    assert await stomp(subprotocols=()).open() is None


async def test_a_customer_connects_with_its_bearer_token(stomp, sjoin):
    joined = await sjoin()
    connected = await stomp().connect(**bearer(joined.token))
    assert connected.command == "CONNECTED"
    assert connected.get("version") == "1.2"
    assert connected.get("heart-beat") is not None


async def test_a_bad_token_gets_error_and_close(stomp):
    client = stomp()
    error = await client.connect(**bearer("forged"))
    assert error.command == "ERROR"
    assert error.get("message") == "authentication failed"
    assert await client.closed_code() == 4008


async def test_no_credentials_get_error(stomp):
    client = stomp()
    assert (await client.connect()).command == "ERROR"


async def test_subscribe_gets_a_receipt_then_the_current_rank(stomp, sjoin):
    await sjoin()
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    customer_id = joined.registration.customer.customer_id
    await client.send("SUBSCRIBE", {"id": "sub-0", "destination": f"/topic/queue-rank/{customer_id}", "receipt": "r1"})
    receipt = await client.frame()
    assert (receipt.command, receipt.get("receipt-id")) == ("RECEIPT", "r1")
    message = await client.frame()
    assert message.get("subscription") == "sub-0"
    assert message.get("destination") == f"/topic/queue-rank/{customer_id}"
    body = json.loads(message.body)
    assert (body["status"], body["rank"], body["customerId"]) == ("WAITING", 2, customer_id)
    assert isinstance(body["version"], int)


async def test_it_pushes_the_new_rank_when_the_customer_ahead_leaves(stomp, sjoin):
    first, second = await sjoin(), await sjoin()
    client = stomp()
    await client.connect(**bearer(second.token))
    await client.send(
        "SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{second.registration.customer.customer_id}"}
    )
    assert (await client.snapshot())["rank"] == 2
    await database_sync_to_async(services.registration_cancel)(registration=first.registration)
    pushed = await client.json()
    assert (pushed["status"], pushed["rank"]) == ("WAITING", 1)
    assert await client.nothing()  # exactly one push


async def test_a_change_while_the_snapshot_is_read_is_pushed_after_it_once(stomp, sjoin, monkeypatch):
    """The customer ahead cancels after the snapshot's read, before it is sent: the hub's push
    of the new rank must not land first (the stale snapshot would then have the last word)."""
    import time

    import realtime.connection as connection_module
    from realtime.hub import get_hub

    first, second = await sjoin(), await sjoin()
    hub = await get_hub()
    read_state = connection_module.registration_by_id_state

    def read_then_the_one_ahead_cancels(registration_id: int) -> dict:
        state = read_state(registration_id)  # rank 2
        before = hub.refreshes
        services.registration_cancel(registration=first.registration)
        deadline = time.monotonic() + 3
        while hub.refreshes == before and time.monotonic() < deadline:
            time.sleep(0.01)  # the hub's refresh of the cancel runs while this snapshot waits
        assert hub.refreshes > before, "the hub never refreshed"
        return state

    monkeypatch.setattr(connection_module, "registration_by_id_state", read_then_the_one_ahead_cancels)
    client = stomp()
    await client.connect(**bearer(second.token))
    await client.send(
        "SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{second.registration.customer.customer_id}"}
    )
    assert (await client.snapshot())["rank"] == 2
    pushed = await client.json()
    assert (pushed["status"], pushed["rank"]) == ("WAITING", 1)
    assert await client.nothing()  # once


async def test_a_customer_who_leaves_is_told_and_gets_no_more_ranks(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send(
        "SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{joined.registration.customer.customer_id}"}
    )
    await client.snapshot()
    await database_sync_to_async(services.registration_cancel)(registration=joined.registration)
    assert (await client.json())["status"] == "CANCELLED"
    assert await client.nothing()


async def test_only_customers_whose_rank_changed_are_pushed(stomp, sjoin):
    first, _second, third = await sjoin(), await sjoin(), await sjoin()
    client = stomp()
    await client.connect(**bearer(first.token))
    await client.send(
        "SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{first.registration.customer.customer_id}"}
    )
    assert (await client.snapshot())["rank"] == 1
    await database_sync_to_async(services.registration_cancel)(registration=third.registration)
    assert await client.nothing(0.5)  # the head's rank did not change


async def test_subscribing_to_another_customers_rank_is_refused(stomp, sjoin):
    mine, theirs = await sjoin(), await sjoin()
    client = stomp()
    await client.connect(**bearer(mine.token))
    await client.send(
        "SUBSCRIBE",
        {"id": "s", "destination": f"/topic/queue-rank/{theirs.registration.customer.customer_id}", "receipt": "x"},
    )
    error = await client.frame()
    assert error.command == "ERROR"
    assert error.get("message") == "subscription refused"
    assert await client.closed_code() == 4008


@pytest.mark.parametrize("destination", ["/topic/counselor/counselor_abc", "/queue/other", "/topic/test/x"])
async def test_a_customer_cannot_subscribe_elsewhere(stomp, sjoin, destination):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send("SUBSCRIBE", {"id": "s", "destination": destination})
    assert (await client.frame()).command == "ERROR"


async def test_a_malformed_frame_gets_error_and_close(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send_raw("SUBSCRIBE\nid:s\ndestination:/topic/a\\tb\n\n\x00")
    error = await client.frame()
    assert error.command == "ERROR"
    assert await client.closed_code() == 4002


async def test_frames_before_connect_are_refused(stomp):
    client = stomp()
    await client.open()
    await client.send("SUBSCRIBE", {"id": "s", "destination": "/topic/queue-rank/x"})
    assert (await client.frame()).command == "ERROR"


async def test_disconnect_is_answered_with_its_receipt_then_close(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send("DISCONNECT", {"receipt": "close-1"})
    receipt = await client.frame()
    assert (receipt.command, receipt.get("receipt-id")) == ("RECEIPT", "close-1")
    assert await client.closed_code() == 1000


async def test_a_frame_split_across_messages_and_binary_messages_work(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.open()
    frame = f"CONNECT\naccept-version:1.2\nAuthorization:Bearer {joined.token}\n\n\x00"
    await client.send_raw(frame[:10].encode())
    await client.send_raw(frame[10:])
    assert (await client.frame()).command == "CONNECTED"


async def test_stomp_command_is_accepted_like_connect_and_heartbeats_are_ignored(stomp, sjoin):
    joined = await sjoin()
    client = stomp(subprotocols=())
    await client.open()
    await client.send_raw("\n")
    await client.send("STOMP", {"accept-version": "1.2", "host": "127.0.0.1", **bearer(joined.token)})
    assert (await client.frame()).command == "CONNECTED"
    await client.send_raw("\n\n")
    assert await client.nothing()


async def test_a_counselor_connects_with_an_api_token_and_gets_the_queue_summary_and_matches(
    stomp, sjoin, counselor_async
):
    counselor, key = counselor_async
    client = stomp()
    connected = await client.connect(Authorization=f"Token {key}")
    assert connected.command == "CONNECTED"
    await client.send("SUBSCRIBE", {"id": "c", "destination": f"/topic/counselor/{counselor.counselor_id}"})
    summary = await client.json()
    assert summary["type"] == "QUEUE" and summary["waiting"] == 0
    await sjoin()
    summary = await client.json()
    assert summary["type"] == "QUEUE" and summary["waiting"] == 1


async def test_a_counselor_cannot_listen_to_another_counselor(stomp, counselor_async):
    _, key = counselor_async
    client = stomp()
    await client.connect(Authorization=f"Token {key}")
    await client.send("SUBSCRIBE", {"id": "c", "destination": "/topic/counselor/counselor_someoneelse"})
    assert (await client.frame()).command == "ERROR"


async def test_client_ack_subscriptions_get_ack_headers(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    destination = f"/topic/queue-rank/{joined.registration.customer.customer_id}"
    await client.send("SUBSCRIBE", {"id": "s", "destination": destination, "ack": "client-individual"})
    message = await client.frame()
    assert message.get("ack")
    await client.send("ACK", {"id": message.get("ack")})
    assert await client.nothing()


async def test_the_origin_check_refuses_a_foreign_origin(sjoin):
    # A missing Origin is a non-browser client: accepted, but never authenticated by a cookie
    # (tests/realtime/test_stomp_origin.py).
    ws = WebsocketCommunicator(application, "/ws/stomp", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await ws.connect()
    assert not connected


async def test_raw_json_tier_authenticates_then_pushes_the_same_bodies(sjoin):
    first, second = await sjoin(), await sjoin()
    ws = WebsocketCommunicator(application, "/ws/raw", headers=[ORIGIN])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "auth", "token": second.token})
    snapshot = await ws.receive_json_from()
    assert (snapshot["status"], snapshot["rank"]) == ("WAITING", 2)
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from() == {"type": "pong"}
    await database_sync_to_async(services.registration_cancel)(registration=first.registration)
    assert (await ws.receive_json_from())["rank"] == 1
    await ws.disconnect()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "malformed JSON"),
        ('{"type": "ping"}', "authenticate first"),
        ('{"type": "auth", "token": "forged"}', "authentication failed"),
        ("[1,2]", "malformed message"),
    ],
)
async def test_raw_json_tier_refuses_bad_messages_with_an_error_then_close(message, error):
    ws = WebsocketCommunicator(application, "/ws/raw", headers=[ORIGIN])
    await ws.connect()
    await ws.send_to(text_data=message)
    reply = await ws.receive_json_from()
    assert reply["type"] == "error" and reply["error"] == error
    assert (await ws.receive_output())["type"] == "websocket.close"


async def test_socket_traffic_renews_the_customers_lease(stomp, sjoin, settings):
    from queues import leases

    settings.HEARO_HEARTBEAT_SECONDS = 0  # renew on every frame for the test
    joined = await sjoin()
    await database_sync_to_async(leases.lease_drop)("registration", joined.registration.id)
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send_raw("\n")
    await client.nothing(0.3)
    alive = await database_sync_to_async(leases.lease_alive)("registration", [joined.registration.id])
    assert alive == {joined.registration.id}
    assert await database_sync_to_async(Registration.objects.filter(pk=joined.registration.id).count)() == 1


async def test_the_server_heart_beats_at_the_negotiated_interval(stomp, sjoin, settings):
    settings.HEARO_STOMP_HEARTBEAT_MS = 100
    joined = await sjoin()
    client = stomp()
    await client.open()
    await client.send("CONNECT", {"accept-version": "1.2", "heart-beat": "0,200", **bearer(joined.token)})
    connected = await client.frame()
    assert connected.get("heart-beat") == "100,100"
    beat = await client.ws.receive_output(2)
    assert beat == {"type": "websocket.send", "text": "\n"}  # LF, never CRLF


async def test_a_client_silent_past_its_heart_beat_is_closed_with_an_error(stomp, sjoin, settings):
    settings.HEARO_STOMP_HEARTBEAT_MS = 100
    joined = await sjoin()
    client = stomp()
    await client.open()
    await client.send("CONNECT", {"accept-version": "1.2", "heart-beat": "100,0", **bearer(joined.token)})
    assert (await client.frame()).command == "CONNECTED"
    error = await client.frame(timeout=3)
    assert (error.command, error.get("message")) == ("ERROR", "heart-beat timeout")
    assert await client.closed_code() == 4002


async def test_a_customer_message_older_than_one_delivered_is_dropped(stomp, sjoin):
    # As when two workers change one visit 28 ms apart and their messages cross:
    # a requeue's WAITING arrives after the expiry that followed it.
    from channels.layers import get_channel_layer

    from common import events

    joined = await sjoin()
    customer_id = joined.registration.customer.customer_id
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    snapshot = await client.snapshot()
    ids = {"customer_id": customer_id, "registration_id": joined.registration.id, "queue_id": "general"}
    expired = events.terminal(**ids, status="EXPIRED", reason="lease_expired") | {"seq": snapshot["seq"] + 2}
    requeued = events.waiting(**ids, rank=1, version=10**6, eta=None) | {"seq": snapshot["seq"] + 1}
    layer = get_channel_layer()
    for body in (expired, requeued):
        await layer.group_send(events.customer_group(customer_id), {"type": "customer.event", "body": body})
    assert (await client.json())["status"] == "EXPIRED"
    assert await client.nothing(0.5)  # the older WAITING never reaches the page


async def test_a_customer_message_without_a_seq_is_not_taken_for_stale(stomp, sjoin):
    # The naive fan-out baseline sends ranks with a version and no seq.
    from channels.layers import get_channel_layer

    from common import events

    joined = await sjoin()
    customer_id = joined.registration.customer.customer_id
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    assert (await client.snapshot())["seq"] > 0  # the join's history row
    ids = {"customer_id": customer_id, "registration_id": joined.registration.id, "queue_id": "general"}
    body = events.waiting(**ids, rank=7, version=10**6, eta=None)
    assert "seq" not in body
    await get_channel_layer().group_send(events.customer_group(customer_id), {"type": "customer.event", "body": body})
    assert (await client.json())["rank"] == 7
