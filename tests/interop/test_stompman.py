"""stompman 3.16 (asyncio) over its WebSocketConnection: UUID subscription ids, ack:client-individual.

stompman's WebSocketConnection opens the socket with no Origin header and no
way to add one. A client that authenticates with a header in CONNECT needs
none, so the stock class connects to /ws/stomp and to the raw STOMP entry
point /ws/sockjs/websocket; a subclass that only adds the Origin checks the
browser's way in too.
"""

import asyncio
import json

import pytest
import stompman
import websockets
from stompman.connection_ws import WebSocketConnection
from stompman.errors import SubscriptionError
from stompman.frames import DisconnectFrame, ErrorFrame, MessageFrame, ReceiptFrame

from tests.test_server import call

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ENTRY_POINTS = [
    pytest.param("/ws/sockjs/websocket", False, id="raw-entry-point-no-origin"),
    pytest.param("/ws/stomp", False, id="ws-stomp-no-origin"),
    pytest.param("/ws/stomp", True, id="ws-stomp-with-origin"),
]


def recording_connection(origin: str | None) -> tuple[type[WebSocketConnection], list, list]:
    """Return a WebSocketConnection class that logs every frame, and its two logs."""
    read: list = []
    written: list = []

    class Recording(WebSocketConnection):
        @classmethod
        async def connect(cls, *, host, port, timeout, read_max_chunk_size, ssl, ws_uri_path=None):
            if origin is None:
                return await super().connect(
                    host=host,
                    port=port,
                    timeout=timeout,
                    read_max_chunk_size=read_max_chunk_size,
                    ssl=ssl,
                    ws_uri_path=ws_uri_path,
                )
            uri = f"ws://{host}:{port}{ws_uri_path}"
            try:
                socket = await asyncio.wait_for(
                    websockets.connect(uri, origin=origin, max_size=read_max_chunk_size), timeout
                )
            except (TimeoutError, OSError, websockets.WebSocketException):
                return None
            return cls(websocket=socket, read_max_chunk_size=read_max_chunk_size, ssl=ssl)

        async def write_frame(self, frame) -> None:
            written.append(frame)
            await super().write_frame(frame)

        async def read_frames(self):
            async for frame in super().read_frames():
                read.append(frame)
                yield frame

    return Recording, read, written


def client(node, path: str, with_origin: bool, token: str, errors: list) -> tuple[stompman.Client, list, list]:
    connection_class, read, written = recording_connection(node.origin if with_origin else None)
    # stompman always sends login and passcode; connect_headers carries the bearer token.
    server = stompman.ConnectionParameters(
        host="127.0.0.1",
        port=node.port,
        login="",
        passcode="",
        ws_uri_path=path,
        connect_headers={"Authorization": f"Bearer {token}"},
    )
    stomp = stompman.Client(
        [server], connection_class=connection_class, connect_retry_attempts=1, on_error_frame=errors.append
    )
    return stomp, read, written


def receipts(frames: list) -> list[str]:
    return [f.headers["receipt-id"] for f in frames if isinstance(f, ReceiptFrame)]


@pytest.mark.parametrize(("path", "with_origin"), ENTRY_POINTS)
async def test_a_customer_hears_its_snapshot_then_the_new_rank_and_disconnects_with_a_receipt(
    customer_node, queue, path, with_origin
):
    errors: list = []
    stomp, read, written = client(customer_node, path, with_origin, queue.me["token"], errors)
    own = f"/topic/queue-rank/{queue.me['customerId']}"
    received: asyncio.Queue = asyncio.Queue()
    async with asyncio.timeout(15), stomp:
        subscription = await stomp.subscribe(
            own, received.put, on_suppressed_exception=lambda e, f: errors.append(e), receipt_timeout=5
        )
        snapshot = json.loads((await received.get()).body)
        status, _ = await asyncio.to_thread(call, customer_node.port, "POST", "/api/queue/cancel", queue.ahead["token"])
        assert status == 200
        pushed = json.loads((await received.get()).body)
        await subscription.unsubscribe()
    assert [(b["status"], b["rank"], b["customerId"]) for b in (snapshot, pushed)] == [
        ("WAITING", 2, queue.me["customerId"]),
        ("WAITING", 1, queue.me["customerId"]),
    ]
    messages = [f for f in read if isinstance(f, MessageFrame)]
    # stompman subscribes with ack:client-individual: every MESSAGE must carry ack.
    assert all(m.headers["ack"] and m.headers["subscription"] == subscription.id for m in messages)
    disconnect = next(f for f in written if isinstance(f, DisconnectFrame))
    assert receipts(read)[-1] == disconnect.headers["receipt"]
    assert errors == []


@pytest.mark.parametrize(("path", "with_origin"), ENTRY_POINTS)
async def test_a_customer_subscribing_to_another_customers_topic_gets_error(customer_node, queue, path, with_origin):
    errors: list = []
    stomp, read, _ = client(customer_node, path, with_origin, queue.me["token"], errors)
    foreign = f"/topic/queue-rank/{queue.other['customerId']}"
    async with asyncio.timeout(15), stomp:
        with pytest.raises(SubscriptionError) as refused:
            await stomp.subscribe(foreign, asyncio.sleep, on_suppressed_exception=print, receipt_timeout=5)
    assert refused.value.reason == "rejected"
    assert refused.value.frame.headers["message"] == "subscription refused"
    assert [e.headers["message"] for e in errors] == ["subscription refused"]
    assert not any(isinstance(f, MessageFrame) for f in read)
    assert [f for f in read if isinstance(f, ErrorFrame)] == errors
