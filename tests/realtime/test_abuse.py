"""Abuse from a live client gets an ERROR and a close, and disturbs nobody else."""

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def subscribed(stomp, joined):
    client = stomp()
    await client.connect(**bearer(joined.token))
    customer_id = joined.registration.customer.customer_id
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    await client.snapshot()
    return client


async def test_a_flooding_client_is_cut_off_and_its_neighbour_keeps_working(stomp, sjoin, settings):
    settings.HEARO_FRAMES_PER_SECOND = 5
    flooder, neighbour = await sjoin(), await sjoin()
    bad = await subscribed(stomp, flooder)
    good = await subscribed(stomp, neighbour)
    for _ in range(30):
        await bad.send_raw("\n")
    error = await bad.frame()
    assert (error.command, error.get("message")) == ("ERROR", "rate limit exceeded")
    assert await bad.closed_code() == 4008
    await good.send("UNSUBSCRIBE", {"id": "s", "receipt": "still-here"})
    assert (await good.frame()).get("receipt-id") == "still-here"


async def test_an_oversized_frame_gets_error_and_close(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send_raw("SEND\ndestination:/topic/test/x\n\n" + "x" * (2 * 1024 * 1024) + "\x00")
    error = await client.frame()
    assert error.command == "ERROR" and "too large" in error.get("message")


async def test_an_out_of_order_second_connect_gets_error(stomp, sjoin):
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    await client.send("CONNECT", {"accept-version": "1.2", **bearer(joined.token)})
    assert (await client.frame()).command == "ERROR"


async def test_one_customer_cannot_open_unbounded_connections(stomp, sjoin, settings):
    settings.HEARO_MAX_CONNECTIONS_PER_CUSTOMER = 2
    joined = await sjoin()
    first, second, third = stomp(), stomp(), stomp()
    assert (await first.connect(**bearer(joined.token))).command == "CONNECTED"
    assert (await second.connect(**bearer(joined.token))).command == "CONNECTED"
    refused = await third.connect(**bearer(joined.token))
    assert (refused.command, refused.get("message")) == ("ERROR", "too many connections")
    await first.close()
    fourth = stomp()
    assert (await fourth.connect(**bearer(joined.token))).command == "CONNECTED"  # a slot freed


async def test_subscriptions_per_connection_are_capped(stomp, sjoin, settings):
    settings.HEARO_MAX_SUBSCRIPTIONS = 2
    joined = await sjoin()
    client = stomp()
    await client.connect(**bearer(joined.token))
    destination = f"/topic/queue-rank/{joined.registration.customer.customer_id}"
    for sub_id in ("a", "b", "c"):
        await client.send("SUBSCRIBE", {"id": sub_id, "destination": destination})
    frames = [await client.frame() for _ in range(3)]
    assert [f.command for f in frames] == ["MESSAGE", "MESSAGE", "ERROR"]
    assert frames[-1].get("message") == "too many subscriptions"
