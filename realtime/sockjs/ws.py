"""The SockJS websocket transport: ``/{server}/{session}/websocket``, framed.

Every WebSocket is its own session (the protocol allows reusing a session id
across sockets). Inbound messages are JSON strings or arrays of strings;
broken JSON ends the socket at once, as the protocol says.

A session's close ends the socket with the session's code and reason (the
close service's ``3000 "Go away!"``), in the ASGI ``reason`` key (ASGI 2.3).
Daphne 4.2 sends the code but drops the reason (django/daphne#374), so behind
Daphne the framed transport's ``c[code,"reason"]`` frame is where a client
reads it; ``tests/realtime/test_sockjs_conformance.py`` pins that limit.
"""

import asyncio
import json

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from realtime.consumers import application_close_code
from realtime.sockjs import framing
from realtime.sockjs.services import Service
from realtime.sockjs.session import Session

BROKEN_FRAMING = (3000, "Broken framing.")


def close_message(code: int, reason: str) -> dict:
    """Return the ``websocket.close`` for a SockJS close, its code one a server may send."""
    return {"type": "websocket.close", "code": application_close_code(code), "reason": reason}


class SockJSWebsocketConsumer(AsyncConsumer):
    service: Service

    async def dispatch(self, message):
        # No per-message aclose_old_connections hop (see realtime.consumers).
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is not None:
            await handler(message)

    async def websocket_connect(self, message):
        if not self.service.websocket:
            await self.send({"type": "websocket.close", "code": 4004})
            return
        await self.send({"type": "websocket.accept"})
        self.session = Session("ws", self.service.handler(), self.scope, disconnect_delay=0)
        self.session.attach(self)
        await self.session.handler.opened(self.session)
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            frame = self.session.next_frame()
            while frame is not None:
                await self.send({"type": "websocket.send", "text": frame})
                if frame == self.session.close_frame:
                    await self.send(close_message(*self.session.close_reason))
                    return
                frame = self.session.next_frame()
            if not await self.session.wait(self.service.heartbeat_delay):
                await self.send({"type": "websocket.send", "text": framing.HEARTBEAT})

    async def websocket_receive(self, message):
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", "replace")
        if not text:
            return  # empty frames are ignored
        try:
            texts = framing.decode(text)
        except framing.BrokenJson:
            # Abruptly, as the protocol says, with the reference servers' code and reason.
            await self.send(close_message(*BROKEN_FRAMING))
            return
        await self.session.deliver(texts)

    async def websocket_disconnect(self, message):
        if hasattr(self, "writer"):
            self.writer.cancel()
            await self.session.end()
        raise StopConsumer()


class RawWebsocketConsumer(SockJSWebsocketConsumer):
    """``/websocket`` under a service: the same session handler, no SockJS framing."""

    async def _write(self) -> None:
        self.session.opened = True  # no open frame on the raw entry point
        while True:
            frame = self.session.next_frame()
            if frame is not None and frame == self.session.close_frame:
                await self.send(close_message(*self.session.close_reason))
                return
            if frame is not None:
                for text in json.loads(frame[1:]):
                    await self.send({"type": "websocket.send", "text": text})
                continue
            await self.session.wait(self.service.heartbeat_delay)

    async def websocket_receive(self, message):
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", "replace")
        await self.session.deliver([text])


def websocket_consumer(service: Service, *, raw: bool = False):
    base = RawWebsocketConsumer if raw else SockJSWebsocketConsumer
    return type("Consumer", (base,), {"service": service}).as_asgi()
