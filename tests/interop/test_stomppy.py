"""stomp.py 9's WSStompConnection (websocket-client underneath: STOMP command, host header, no subprotocol)."""

import hashlib
import json
import secrets
import threading

import pytest
import stomp
from stomp.adapter.ws import WSStompConnection

from tests.interop.conftest import TEST_DESTINATION
from tests.test_server import call

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder(stomp.ConnectionListener):
    """Keep every frame stomp.py hands its listener, in order; wait for them with a deadline."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.changed = threading.Condition()

    def _add(self, kind: str, frame=None) -> None:
        with self.changed:
            self.events.append((kind, frame))
            self.changed.notify_all()

    def on_connected(self, frame):
        self._add("connected", frame)

    def on_message(self, frame):
        self._add("message", frame)

    def on_receipt(self, frame):
        self._add("receipt", frame)

    def on_error(self, frame):
        self._add("error", frame)

    def on_disconnected(self):
        self._add("disconnected")

    def of(self, kind: str) -> list:
        return [frame for k, frame in self.events if k == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 5) -> list:
        with self.changed:
            arrived = self.changed.wait_for(lambda: len(self.of(kind)) >= count, timeout)
        assert arrived, f"waited {timeout}s for {count} {kind}: {self.events}"
        return self.of(kind)


def connection(port: int, **options) -> tuple[WSStompConnection, Recorder]:
    conn = WSStompConnection([("127.0.0.1", port)], ws_path="/ws/stomp", reconnect_attempts_max=1, timeout=5, **options)
    recorder = Recorder()
    conn.set_listener("recorder", recorder)
    return conn, recorder


def test_a_customer_hears_its_snapshot_then_the_new_rank_and_disconnects_with_a_receipt(customer_node, queue):
    conn, seen = connection(customer_node.port)
    conn.connect(headers={"Authorization": f"Bearer {queue.me['token']}"}, wait=True)
    assert seen.of("connected")[0].headers["version"] == "1.2"
    own = f"/topic/queue-rank/{queue.me['customerId']}"
    conn.subscribe(own, id="s1", ack="auto", receipt="r-sub")
    assert seen.wait("receipt")[0].headers["receipt-id"] == "r-sub"
    snapshot = seen.wait("message")[0]
    assert (snapshot.headers["subscription"], snapshot.headers["destination"]) == ("s1", own)
    status, _ = call(customer_node.port, "POST", "/api/queue/cancel", queue.ahead["token"])
    assert status == 200
    bodies = [json.loads(m.body) for m in seen.wait("message", 2)]
    assert [(b["status"], b["rank"], b["customerId"]) for b in bodies] == [
        ("WAITING", 2, queue.me["customerId"]),
        ("WAITING", 1, queue.me["customerId"]),
    ]
    conn.disconnect(receipt="bye")
    assert [r.headers["receipt-id"] for r in seen.wait("receipt", 2)] == ["r-sub", "bye"]
    seen.wait("disconnected")
    assert seen.of("error") == []


def test_a_customer_subscribing_to_another_customers_topic_gets_error_and_close(customer_node, queue):
    conn, seen = connection(customer_node.port)
    conn.connect(headers={"Authorization": f"Bearer {queue.me['token']}"}, wait=True)
    conn.subscribe(f"/topic/queue-rank/{queue.other['customerId']}", id="s1", receipt="r-sub")
    error = seen.wait("error")[0]
    assert error.headers["message"] == "subscription refused"
    seen.wait("disconnected")
    assert seen.of("message") == seen.of("receipt") == []


def test_the_broker_relays_headers_and_bodies_unchanged_to_every_subscriber(broker_node):
    conns = [connection(broker_node.port, auto_decode=False) for _ in range(2)]
    for i, (conn, seen) in enumerate(conns):
        conn.connect("guest", "guest", wait=True)
        conn.subscribe(TEST_DESTINATION, id=f"s{i}", receipt=f"sub-{i}")
        assert seen.wait("receipt")[0].headers["receipt-id"] == f"sub-{i}"
    token = secrets.token_hex(4)
    # stomp.py escapes and unescapes in one pass, so "\c" inside a value survives here.
    custom = {"x-trace": token, "x-odd": f"a:b\\c\nd\\\\{token}"}
    bodies = [f"héllo {token}\x00✓".encode(), secrets.token_hex(512 * 1024 - 512).encode()]
    sender, sender_seen = conns[0]
    for i, body in enumerate(bodies):
        sender.send(TEST_DESTINATION, body, headers={**custom, "receipt": f"send-{i}"})
    assert [r.headers["receipt-id"] for r in sender_seen.wait("receipt", 3)] == ["sub-0", "send-0", "send-1"]
    for i, (conn, seen) in enumerate(conns):
        messages = seen.wait("message", len(bodies), timeout=10)
        for message, body in zip(messages, bodies, strict=True):
            assert {k: message.headers.get(k) for k in custom} == custom
            assert (message.headers["subscription"], message.headers["destination"]) == (f"s{i}", TEST_DESTINATION)
            assert message.headers["content-length"] == str(len(body))
            assert hashlib.sha256(message.body).digest() == hashlib.sha256(body).digest()
        conn.disconnect(receipt="bye")
        assert seen.wait("receipt", 2 if i else 3)[-1].headers["receipt-id"] == "bye"


def test_the_broker_refuses_a_login_other_than_guest(broker_node):
    conn, seen = connection(broker_node.port)
    conn.connect("guest", secrets.token_hex(4), wait=False)
    assert seen.wait("error")[0].headers["message"] == "authentication failed"
    seen.wait("disconnected")
    assert seen.of("connected") == []


TOPIC, QUEUE = "/topic/chat.general", "/queue/test01"


def guest(port: int) -> tuple[WSStompConnection, Recorder]:
    conn, seen = connection(port)
    conn.connect("guest", "guest", wait=True)
    return conn, seen


def receipted(seen: Recorder, receipt: str, call, *args, **headers) -> None:
    """Call `call(*args, receipt=receipt, **headers)`; wait until the broker answers that receipt."""
    call(*args, receipt=receipt, **headers)
    with seen.changed:
        answered = seen.changed.wait_for(
            lambda: any(r.headers["receipt-id"] == receipt for r in seen.of("receipt")), timeout=5
        )
    assert answered, (receipt, seen.events)


def bodies(seen: Recorder, destination: str) -> list[str]:
    return [m.body for m in seen.of("message") if m.headers["destination"] == destination]


def test_the_broker_delivers_a_committed_transaction_to_every_subscriber_and_drops_an_aborted_one(broker_node):
    (sender, sent), *receivers = [guest(broker_node.port) for _ in range(3)]
    for i, (conn, seen) in enumerate(receivers):
        receipted(seen, f"sub-{i}", conn.subscribe, TOPIC, id=f"s{i}")
    dropped = sender.begin()
    receipted(sent, "s1", sender.send, TOPIC, "aborted", transaction=dropped)
    receipted(sent, "a1", sender.abort, dropped)
    kept = sender.begin()
    receipted(sent, "s2", sender.send, TOPIC, "committed", transaction=kept)
    assert [bodies(seen, TOPIC) for _, seen in receivers] == [[], []]
    receipted(sent, "c2", sender.commit, kept)
    receipted(sent, "s3", sender.send, TOPIC, "after")
    for conn, seen in receivers:
        seen.wait("message", 2)
        assert bodies(seen, TOPIC) == ["committed", "after"]
        conn.disconnect()
    assert [seen.of("error") for _, seen in [(sender, sent), *receivers]] == [[], [], []]
    sender.disconnect()


def test_competing_consumers_on_a_queue_share_it_and_settle_with_client_acks_nack_and_redelivery(broker_node):
    producer, produced = guest(broker_node.port)
    consumers = {"a": guest(broker_node.port), "b": guest(broker_node.port)}
    modes = {"a": "client", "b": "client-individual"}
    for name, (conn, seen) in consumers.items():
        receipted(seen, f"sub-{name}", conn.subscribe, QUEUE, id=name, ack=modes[name])

    def publish(body: str) -> None:
        receipted(produced, f"send-{body}", producer.send, QUEUE, body)

    def arrived(body: str, redelivered: str | None = None) -> tuple[str, object]:
        """Wait for `body` at one consumer; return which one and the MESSAGE."""
        found = {}

        def look() -> bool:
            for name, (_, seen) in consumers.items():
                for m in seen.of("message"):
                    if m.body == body and m.headers.get("redelivered") == redelivered:
                        found["it"] = (name, m)
            return bool(found)

        for _ in range(250):
            if look():
                return found["it"]
            threading.Event().wait(0.02)
        raise AssertionError(f"{body} ({redelivered}) never arrived: {[s.events for _, s in consumers.values()]}")

    for i in range(4):
        publish(f"m{i}")
    owners = {f"m{i}": arrived(f"m{i}")[0] for i in range(4)}
    assert set(owners.values()) == {"a", "b"}  # each message to one consumer, both had some
    # a (client) acks its last message, which covers the earlier; b (client-individual) acks each.
    a_conn, a_seen = consumers["a"]
    last_of_a = [m for m in a_seen.of("message")][-1]
    receipted(a_seen, "ack-a", a_conn.ack, last_of_a.headers["ack"])
    b_conn, b_seen = consumers["b"]
    for i, m in enumerate(b_seen.of("message")):
        receipted(b_seen, f"ack-b{i}", b_conn.ack, m.headers["ack"])

    publish("nacked")
    name, message = arrived("nacked")
    conn, seen = consumers[name]
    receipted(seen, "nack", conn.nack, message.headers["ack"])
    name, message = arrived("nacked", "true")
    conn, seen = consumers[name]
    receipted(seen, "ack-nacked", conn.ack, message.headers["ack"])

    publish("held")
    holder, _ = arrived("held")
    consumers[holder][0].disconnect()
    other, message = arrived("held", "true")
    assert other != holder
    conn, seen = consumers[other]
    receipted(seen, "ack-held", conn.ack, message.headers["ack"])
    redelivered = [m.body for _, s in consumers.values() for m in s.of("message") if m.headers.get("redelivered")]
    assert sorted(redelivered) == ["held", "nacked"]  # every ack settled what it named

    late, late_seen = guest(broker_node.port)
    receipted(late_seen, "sub-late", late.subscribe, QUEUE, id="late", ack="client")
    threading.Event().wait(0.5)
    assert late_seen.of("message") == []  # nothing left in the queue
    for each in (late, conn, producer):
        each.disconnect()


def test_an_ack_in_an_aborted_transaction_leaves_the_message_to_be_redelivered(broker_node):
    producer, produced = guest(broker_node.port)
    first, first_seen = guest(broker_node.port)
    receipted(first_seen, "s1", first.subscribe, QUEUE, id="1", ack="client-individual")
    receipted(produced, "p1", producer.send, QUEUE, "txack")
    [message] = first_seen.wait("message")
    tx = first.begin()
    first.ack(message.headers["ack"], transaction=tx)
    receipted(first_seen, "abort", first.abort, tx)
    second, second_seen = guest(broker_node.port)
    receipted(second_seen, "s2", second.subscribe, QUEUE, id="2", ack="client-individual")
    first.disconnect()
    [again] = second_seen.wait("message")
    assert (again.body, again.headers.get("redelivered")) == ("txack", "true")
    tx = second.begin()
    second.ack(again.headers["ack"], transaction=tx)
    receipted(second_seen, "commit", second.commit, tx)
    third, third_seen = guest(broker_node.port)
    receipted(third_seen, "s3", third.subscribe, QUEUE, id="3")
    second.disconnect()
    threading.Event().wait(0.5)
    assert third_seen.of("message") == []  # the committed ACK settled it
    third.disconnect()
    producer.disconnect()


@pytest.mark.parametrize("reuse", [False, True])
def test_an_unknown_or_reused_transaction_id_gets_error_and_close(broker_node, reuse):
    conn, seen = guest(broker_node.port)
    if reuse:
        conn.begin(transaction="t1")
        conn.commit("t1")
        conn.begin(transaction="t1")
    else:
        conn.commit("never-begun")
    error = seen.wait("error")[0]
    assert error.headers["message"] == ("transaction id reused" if reuse else "unknown transaction")
    seen.wait("disconnected")
