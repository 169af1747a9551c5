"""The conformance broker's topics, queues, acks and transactions, over WebsocketCommunicator."""

import pytest
from channels.testing import WebsocketCommunicator

from realtime import conformance
from realtime.conformance import ConformanceStompConsumer, QueueBroker
from realtime.stomp import Parser
from tests.realtime.conftest import ORIGIN, StompClient

pytestmark = pytest.mark.asyncio

BROKER = ConformanceStompConsumer.as_asgi()
QUEUE, TOPIC = "/queue/test01", "/topic/chat.general"


@pytest.fixture(autouse=True)
def fresh_queues(monkeypatch):
    """Each test gets empty queues: suites reuse names like /queue/test01."""
    monkeypatch.setattr(conformance, "QUEUES", QueueBroker())


class Guest(StompClient):
    """A StompClient on the conformance broker's consumer, logged in as guest/guest."""

    def __init__(self) -> None:
        # Not super().__init__(): that would open a communicator on the product app.
        self.ws = WebsocketCommunicator(BROKER, "/ws/stomp", headers=[ORIGIN], subprotocols=["v12.stomp"])
        self.parser = Parser()
        self.pending = []

    async def login(self) -> "Guest":
        connected = await self.connect(login="guest", passcode="guest")
        assert connected.command == "CONNECTED", connected
        return self

    async def subscribe(self, sid: str, destination: str = QUEUE, **headers) -> None:
        await self.send("SUBSCRIBE", {"id": sid, "destination": destination, "receipt": f"r-{sid}", **headers})
        assert (await self.frame()).get("receipt-id") == f"r-{sid}"

    async def publish(self, body: str, destination: str = QUEUE, **headers) -> None:
        await self.send("SEND", {"destination": destination, "receipt": f"sent-{body}", **headers}, body)
        assert (await self.frame()).get("receipt-id") == f"sent-{body}"

    async def messages(self, count: int) -> list:
        frames = [await self.frame() for _ in range(count)]
        assert [f.command for f in frames] == ["MESSAGE"] * count, frames
        return frames


async def guests(count: int) -> list[Guest]:
    return [await Guest().login() for _ in range(count)]


def bodies(frames) -> list[str]:
    return [f.body.decode() for f in frames]


async def test_any_topic_name_relays_each_send_to_every_subscriber():
    a, b = await guests(2)
    await a.subscribe("s-a", TOPIC)
    await b.subscribe("s-b", TOPIC)
    await a.publish("hello", TOPIC, **{"x-trace": "t1"})
    for client, sid in ((a, "s-a"), (b, "s-b")):
        [message] = await client.messages(1)
        assert (message.body, message.get("subscription"), message.get("destination")) == (b"hello", sid, TOPIC)
        assert message.get("x-trace") == "t1"


async def test_each_queue_message_goes_to_exactly_one_of_the_competing_consumers():
    producer, a, b = await guests(3)
    await a.subscribe("s-a")
    await b.subscribe("s-b")
    for i in range(4):
        await producer.publish(f"m{i}")
    got_a, got_b = bodies(await a.messages(2)), bodies(await b.messages(2))
    assert sorted(got_a + got_b) == ["m0", "m1", "m2", "m3"]
    assert await a.nothing() and await b.nothing()


async def test_a_message_sent_before_anyone_subscribes_waits_for_the_first_consumer():
    producer, consumer = await guests(2)
    await producer.publish("early")
    await consumer.subscribe("s")
    [message] = await consumer.messages(1)
    assert (message.body, message.get("redelivered")) == (b"early", None)


async def test_a_nack_puts_the_message_back_marked_redelivered():
    producer, consumer = await guests(2)
    await consumer.subscribe("s", ack="client-individual")
    await producer.publish("m0")
    [first] = await consumer.messages(1)
    await consumer.send("NACK", {"id": first.get("ack"), "receipt": "n"})
    again, receipt = await consumer.frame(), await consumer.frame()
    assert (again.body, again.get("redelivered"), receipt.get("receipt-id")) == (b"m0", "true", "n")
    assert again.get("ack") != first.get("ack")


async def test_unacked_messages_go_to_another_consumer_when_the_connection_closes():
    producer, leaving, staying = await guests(3)
    await leaving.subscribe("s", ack="client", **{"prefetch-count": "5"})
    for i in range(2):
        await producer.publish(f"m{i}")
    assert bodies(await leaving.messages(2)) == ["m0", "m1"]
    await staying.subscribe("s2", ack="client-individual")
    await leaving.close()
    redelivered = await staying.messages(2)
    assert [(f.body, f.get("redelivered")) for f in redelivered] == [(b"m0", "true"), (b"m1", "true")]


@pytest.mark.parametrize(
    ("mode", "redelivered"),
    [("client", ["m2"]), ("client-individual", ["m0", "m2"])],
)
async def test_an_ack_settles_cumulatively_in_client_mode_and_one_message_in_client_individual(mode, redelivered):
    producer, first, second = await guests(3)
    await first.subscribe("s", ack=mode)
    for i in range(3):
        await producer.publish(f"m{i}")
    frames = await first.messages(3)
    await first.send("ACK", {"id": frames[1].get("ack"), "receipt": "acked"})
    assert (await first.frame()).get("receipt-id") == "acked"
    await second.subscribe("s2", ack="client-individual")
    await first.close()
    assert bodies(await second.messages(len(redelivered))) == redelivered
    assert await second.nothing()


async def test_unsubscribing_hands_unacked_messages_to_the_next_consumer():
    producer, a, b = await guests(3)
    await a.subscribe("s", ack="client-individual")
    await producer.publish("m0")
    await a.messages(1)
    await b.subscribe("s")
    await a.send("UNSUBSCRIBE", {"id": "s", "receipt": "u"})
    assert (await a.frame()).get("receipt-id") == "u"
    [message] = await b.messages(1)
    assert (message.body, message.get("redelivered")) == (b"m0", "true")


async def test_prefetch_count_holds_back_messages_until_an_ack_makes_room():
    producer, consumer = await guests(2)
    await consumer.subscribe("s", ack="client-individual", **{"prefetch-count": "1"})
    await producer.publish("m0")
    await producer.publish("m1")
    [first] = await consumer.messages(1)
    assert await consumer.nothing()
    await consumer.send("ACK", {"id": first.get("ack")})
    assert bodies(await consumer.messages(1)) == ["m1"]


@pytest.mark.parametrize("destination", [QUEUE, TOPIC])
async def test_a_committed_transaction_delivers_and_an_aborted_one_drops(destination):
    producer, consumer = await guests(2)
    await consumer.subscribe("s", destination)
    await producer.send("BEGIN", {"transaction": "t1"})
    await producer.publish("aborted", destination, transaction="t1")
    await producer.send("ABORT", {"transaction": "t1", "receipt": "ab"})
    assert (await producer.frame()).get("receipt-id") == "ab"
    await producer.send("BEGIN", {"transaction": "t2", "receipt": "b2"})
    assert (await producer.frame()).get("receipt-id") == "b2"
    await producer.publish("one", destination, transaction="t2")
    await producer.publish("two", destination, transaction="t2")
    assert await consumer.nothing()  # held until COMMIT
    await producer.send("COMMIT", {"transaction": "t2", "receipt": "c2"})
    assert (await producer.frame()).get("receipt-id") == "c2"
    assert bodies(await consumer.messages(2)) == ["one", "two"]
    assert await consumer.nothing()


@pytest.mark.parametrize(("end", "redelivered"), [("ABORT", ["m0"]), ("COMMIT", [])])
async def test_an_ack_inside_a_transaction_counts_only_once_committed(end, redelivered):
    producer, first, second = await guests(3)
    await first.subscribe("s", ack="client-individual")
    await producer.publish("m0")
    [message] = await first.messages(1)
    await first.send("BEGIN", {"transaction": "t"})
    await first.send("ACK", {"id": message.get("ack"), "transaction": "t"})
    await first.send(end, {"transaction": "t", "receipt": "end"})
    assert (await first.frame()).get("receipt-id") == "end"
    await second.subscribe("s2")
    await first.close()
    assert bodies(await second.messages(len(redelivered))) == redelivered
    assert await second.nothing()


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([("COMMIT", {"transaction": "never-begun"})], "unknown transaction"),
        ([("SEND", {"destination": QUEUE, "transaction": "never-begun"})], "unknown transaction"),
        ([("BEGIN", {"transaction": "t"}), ("BEGIN", {"transaction": "t"})], "transaction id reused"),
        (
            [("BEGIN", {"transaction": "t"}), ("COMMIT", {"transaction": "t"}), ("BEGIN", {"transaction": "t"})],
            "transaction id reused",
        ),
    ],
)
async def test_an_unknown_or_reused_transaction_id_gets_error_and_close(frames, message):
    client = await Guest().login()
    for command, headers in frames:
        await client.send(command, headers)
    error = await client.frame()
    assert (error.command, error.get("message")) == ("ERROR", message)
    assert await client.closed_code() == 4002


async def test_a_transaction_left_open_at_disconnect_is_aborted():
    producer, consumer = await guests(2)
    await consumer.subscribe("s")
    await producer.send("BEGIN", {"transaction": "t"})
    await producer.publish("never", transaction="t")
    await producer.send("DISCONNECT", {"receipt": "bye"})
    assert (await producer.frame()).get("receipt-id") == "bye"
    assert await consumer.nothing()
    assert conformance.QUEUES.waiting(QUEUE) == 0


async def test_the_product_destinations_stay_closed_to_the_guest():
    client = await Guest().login()
    await client.send("SUBSCRIBE", {"id": "s", "destination": "/topic/queue-rank/abc"})
    error = await client.frame()
    assert (error.command, error.get("message")) == ("ERROR", "subscription refused")


# -- the same session machine on the product topics ------------------------------


async def customer(stomp, sjoin) -> tuple[StompClient, str]:
    """Return a connected customer's client and its own rank topic."""
    joined = await sjoin()
    client = stomp()
    await client.connect(Authorization=f"Bearer {joined.token}")
    return client, f"/topic/queue-rank/{joined.registration.customer.customer_id}"


@pytest.mark.django_db(transaction=True)
async def test_a_customers_ack_and_transaction_frames_get_their_receipts(stomp, sjoin):
    client, own = await customer(stomp, sjoin)
    await client.send("SUBSCRIBE", {"id": "s", "destination": own, "ack": "client", "receipt": "r-sub"})
    assert (await client.frame()).get("receipt-id") == "r-sub"
    snapshot = await client.frame()
    await client.send("BEGIN", {"transaction": "t", "receipt": "r-begin"})
    await client.send("ACK", {"id": snapshot.get("ack"), "transaction": "t", "receipt": "r-held"})
    await client.send("COMMIT", {"transaction": "t", "receipt": "r-commit"})
    await client.send("ACK", {"id": snapshot.get("ack"), "receipt": "r-ack"})
    receipts = [(await client.frame()).get("receipt-id") for _ in range(4)]
    assert receipts == ["r-begin", "r-held", "r-commit", "r-ack"]


@pytest.mark.django_db(transaction=True)
async def test_a_customers_send_inside_a_transaction_is_refused_when_it_arrives(stomp, sjoin):
    client, own = await customer(stomp, sjoin)
    await client.send("BEGIN", {"transaction": "t"})
    await client.send("SEND", {"destination": own, "transaction": "t"}, "{}")
    error = await client.frame()
    assert (error.command, error.get("message")) == ("ERROR", "send refused")
    assert await client.closed_code() == 4008
