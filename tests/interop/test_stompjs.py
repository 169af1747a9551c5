"""@stomp/stompjs 7 under Node 20, over Node's own WebSocket (undici) and over the ws package."""

import base64
import hashlib
import secrets

import pytest

from tests.interop.conftest import TEST_DESTINATION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.parametrize("factory", ["undici", "ws"])]


def of(events: list[dict], kind: str, client: str | None = None) -> list[dict]:
    """Return the observations of one kind, optionally from one client."""
    return [e for e in events if e["event"] == kind and (client is None or e.get("client") == client)]


def rank_config(node, queue) -> dict:
    return {
        "url": node.ws_url(),
        "origin": node.origin,
        "httpBase": node.origin,
        "token": queue.me["token"],
        "customerId": queue.me["customerId"],
        "aheadToken": queue.ahead["token"],
        "foreignId": queue.other["customerId"],
    }


def test_a_customer_hears_its_snapshot_then_the_new_rank_and_disconnects_with_a_receipt(
    customer_node, queue, stompjs, factory
):
    events = stompjs("rank", factory, rank_config(customer_node, queue))
    assert "timeout" not in [e["event"] for e in events]
    connected = of(events, "connected", "me")[0]
    assert (connected["headers"]["version"], connected["protocol"]) == ("1.2", "v12.stomp")
    messages = of(events, "message", "me")
    assert [(m["body"]["status"], m["body"]["rank"]) for m in messages] == [("WAITING", 2), ("WAITING", 1)]
    own = f"/topic/queue-rank/{queue.me['customerId']}"
    assert {(m["body"]["customerId"], m["headers"]["destination"]) for m in messages} == {(queue.me["customerId"], own)}
    assert of(events, "cancelled-ahead")[0]["status"] == 200
    # deactivate() sends DISCONNECT with receipt:close-N and waits for the RECEIPT.
    assert of(events, "disconnect-receipt", "me")[0]["receiptId"].startswith("close-")
    assert of(events, "error", "me") == []


def test_a_customer_subscribing_to_another_customers_topic_gets_error_and_close(customer_node, queue, stompjs, factory):
    events = stompjs("rank", factory, rank_config(customer_node, queue))
    error = of(events, "error", "nosy")
    assert [e["headers"]["message"] for e in error] == ["subscription refused"]
    assert queue.other["customerId"] in error[0]["body"]
    assert [e["code"] for e in of(events, "close", "nosy")] == [4008]
    assert of(events, "leak") == []


def expected_message(spec: dict) -> bytes:
    return base64.b64decode(spec["base64"]) if "base64" in spec else spec["text"].encode()


def assert_relayed_unchanged(events: list[dict], specs: list[dict], clients=("a", "b")) -> None:
    """Every subscriber got every SEND, in order, with its headers and bytes intact."""
    for client in clients:
        got = of(events, "message", client)
        assert len(got) == len(specs), (client, got)
        for message, spec in zip(got, specs, strict=True):
            body = expected_message(spec)
            assert message["headers"]["destination"] == TEST_DESTINATION
            assert {k: message["headers"].get(k) for k in spec["headers"]} == spec["headers"]
            assert (message["length"], message["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
            assert message["headers"]["content-length"] == str(len(body))


def broker_config(node, messages: list[dict], **extra) -> dict:
    bad_login = "guest-" + secrets.token_hex(3)
    return {
        "url": node.ws_url(),
        "origin": node.origin,
        "destination": TEST_DESTINATION,
        "badLogin": bad_login,
        "messages": messages,
        **extra,
    }


def test_the_broker_relays_text_and_binary_bodies_and_custom_headers_to_every_subscriber(broker_node, stompjs, factory):
    token = secrets.token_hex(4)
    messages = [
        # Colon, backslash and newline travel escaped. Not a backslash before c, n or r:
        # stompjs 7.5.0 unescapes in several passes and would read "\\\\c" back as "\\:".
        {"headers": {"x-trace": token, "x-odd": f"a:b\\d\ne-{token}"}, "text": f"héllo {token} ✓"},
        # Bytes that are not UTF-8 go out as a binary WebSocket message.
        {"headers": {"x-kind": "binary"}, "base64": base64.b64encode(b"\x00\xff" + secrets.token_bytes(64)).decode()},
        # NUL inside a UTF-8 body: only content-length says where it ends.
        {"headers": {"x-kind": "nul"}, "base64": base64.b64encode(f"\x00nul\x00{token}\x00".encode()).decode()},
    ]
    events = stompjs("broker", factory, broker_config(broker_node, messages))
    assert_relayed_unchanged(events, messages)
    receipts = [e["receiptId"] for e in of(events, "receipt")]
    assert sorted(receipts) == sorted(["sub-receipt-a", "sub-receipt-b", *(f"send-receipt-{i}" for i in range(3))])
    assert [e["client"] for e in of(events, "disconnect-receipt")] == ["a", "b"]


def test_the_broker_refuses_any_login_but_guest_with_error_and_close(broker_node, stompjs, factory):
    events = stompjs("broker", factory, broker_config(broker_node, []))
    assert [e["headers"]["message"] for e in of(events, "error", "intruder")] == ["authentication failed"]
    assert [e["code"] for e in of(events, "close", "intruder")] == [4008]
    assert of(events, "connected", "intruder") == []


@pytest.mark.parametrize(
    ("size", "options"),
    [
        # Daphne takes WebSocket messages up to 1 MiB: the whole frame must fit.
        pytest.param(1024 * 1024 - 1024, {}, id="one-ws-message"),
        # stompjs can split a frame across 8 KiB WebSocket messages.
        pytest.param(
            1024 * 1024,
            {"splitLargeFrames": True},
            id="split-frame",
        ),
    ],
)
def test_the_broker_relays_a_frame_of_about_one_mebibyte(broker_node, stompjs, factory, size, options):
    text = secrets.token_hex(size // 2)
    messages = [{"headers": {"x-size": str(size)}, "text": text}]
    config = broker_config(broker_node, messages, clientOptions=options, timeoutMs=30000)
    events = stompjs("broker", factory, config)
    assert of(events, "error") == of(events, "error", "intruder")
    assert_relayed_unchanged(events, messages)


def queue_config(node) -> dict:
    # No Origin at all: a client that authenticates in CONNECT needs none.
    return {"url": node.ws_url(), "topic": "/topic/chat.general", "queue": "/queue/test01", "timeoutMs": 40000}


def test_the_broker_runs_transactions_competing_consumers_acks_nack_and_redelivery(broker_node, stompjs, factory):
    events = stompjs("queues", factory, queue_config(broker_node))
    assert of(events, "error") == [] and "timeout" not in [e["event"] for e in events], events
    messages = of(events, "message")
    topic = [(m["client"], m["body"]) for m in messages if m["destination"] == "/topic/chat.general"]
    # COMMIT delivered to every subscriber, ABORT dropped, nothing before COMMIT.
    assert of(events, "before-commit")[0]["count"] == 0
    assert sorted(topic) == [("a", "after"), ("a", "committed"), ("b", "after"), ("b", "committed")]
    queue = [m for m in messages if m["destination"] == "/queue/test01"]
    first = [m["body"] for m in queue if m["redelivered"] is None]
    # Each message to exactly one consumer; the aborted SEND to none.
    assert sorted(first) == sorted(["q0", "q1", "q2", "q3", "q-committed", "q-after", "q-nack", "q-held", "q-txack"])
    assert {m["client"] for m in queue if m["body"] in ("q0", "q1", "q2", "q3")} == {"a", "b"}
    assert all(m["hasAck"] for m in queue)
    # Only what was NACKed, left unacked at a close, or acked in an aborted transaction came back.
    again = [(m["body"], m["client"]) for m in queue if m["redelivered"] == "true"]
    assert [body for body, _ in again] == ["q-nack", "q-held", "q-txack"]
    holder = next(e for e in of(events, "step") if e["name"] == "holder-leaves")["client"]
    moved = next(e for e in of(events, "step") if e["name"] == "redelivered-to")
    assert moved["client"] == moved["expected"] != holder
    assert dict(again)["q-txack"] == "c"
    assert of(events, "leftover")[0]["count"] == 0
