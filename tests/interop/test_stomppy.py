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
