"""Fixtures for consumer tests: a fresh channel layer and hub per test, a STOMP client."""

import json

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from hearo.asgi import application
from queues import services
from realtime.hub import reset_hub
from realtime.stomp import Frame, Heartbeat, Parser

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@pytest_asyncio.fixture(autouse=True)
async def fresh_layer():
    channel_layers.backends.clear()
    yield
    await reset_hub()
    channel_layers.backends.clear()


class StompClient:
    """A minimal test-side STOMP client over a WebsocketCommunicator."""

    def __init__(self, path="/ws/stomp", subprotocols=("v12.stomp", "v11.stomp", "v10.stomp"), headers=None):
        self.ws = WebsocketCommunicator(
            application, path, headers=[ORIGIN, *(headers or [])], subprotocols=list(subprotocols)
        )
        self.parser = Parser()
        self.pending: list[Frame] = []

    async def open(self):
        connected, subprotocol = await self.ws.connect()
        assert connected
        return subprotocol

    async def send(self, command: str, headers: dict | None = None, body: str = ""):
        lines = [command, *(f"{k}:{v}" for k, v in (headers or {}).items()), "", body]
        await self.ws.send_to(text_data="\n".join(lines) + "\x00")

    async def send_raw(self, data: str | bytes):
        if isinstance(data, bytes):
            await self.ws.send_to(bytes_data=data)
        else:
            await self.ws.send_to(text_data=data)

    async def frame(self, timeout: float = 3) -> Frame:
        while not self.pending:
            message = await self.ws.receive_output(timeout)
            if message["type"] == "websocket.close":
                raise ConnectionError(f"closed with {message.get('code')}")
            data = message.get("text") if message.get("text") is not None else message.get("bytes")
            self.pending.extend(f for f in self.parser.feed(data) if not isinstance(f, Heartbeat))
        return self.pending.pop(0)

    async def json(self, timeout: float = 3) -> dict:
        frame = await self.frame(timeout)
        assert frame.command == "MESSAGE", frame
        return json.loads(frame.body)

    async def snapshot(self, timeout: float = 3) -> dict:
        """Return the rank topic's snapshot, the message with the visit's seq: always the first.

        The connection joins the hub before it reads the snapshot (so nothing
        published in between is lost), and the hub holds its pushes to it until
        the snapshot is sent: no refresh under way lands first.
        """
        body = await self.json(timeout)
        assert "seq" in body, f"the first message is not the snapshot: {body}"
        return body

    async def closed_code(self, timeout: float = 3) -> int:
        while True:
            message = await self.ws.receive_output(timeout)
            if message["type"] == "websocket.close":
                return message.get("code", 1000)

    async def connect(self, **headers) -> Frame:
        await self.open()
        await self.send("CONNECT", {"accept-version": "1.2,1.1,1.0", "heart-beat": "0,0", **headers})
        return await self.frame()

    async def nothing(self, timeout: float = 0.3) -> bool:
        return await self.ws.receive_nothing(timeout)

    async def close(self):
        await self.ws.disconnect()


@pytest.fixture
def stomp():
    clients = []

    def make(**kwargs) -> StompClient:
        client = StompClient(**kwargs)
        clients.append(client)
        return client

    return make


@pytest.fixture
def sjoin():
    """Join the queue from async code; returns the JoinResult."""

    async def _join(name: str = ""):
        return await database_sync_to_async(services.registration_join)(display_name=name)

    return _join


@pytest_asyncio.fixture
async def counselor_async():
    """A counselor and its API token key, created from async code."""
    from rest_framework.authtoken.models import Token

    from matching import counselors

    def make():
        counselor = counselors.counselor_create(username="alice", password="s3cret-pass-1", display_name="Alice")
        return counselor, Token.objects.create(user=counselor.user).key

    return await database_sync_to_async(make)()
