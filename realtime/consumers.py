"""Channels consumers: the WebSocket transport under a PushConnection (STYLE habit 7/9).

The consumer only moves bytes and channel-layer messages; every decision is
in the connection classes. ``dispatch`` skips Channels' per-message
``aclose_old_connections`` thread hop: nothing on the push path touches the
database directly (what does goes through database_sync_to_async, which
manages connections itself), and the hop cost a quarter of Daphne's CPU in a
broadcast.
"""

import asyncio
import logging

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import redis_clients
from realtime.connection import PushConnection
from realtime.json_connection import JsonConnection
from realtime.layers import channel_forget
from realtime.stomp_connection import StompConnection

STOMP_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
# The longest pause between tries to reach the channel layer again after losing Redis.
LAYER_RETRY_MAX_SECONDS = 2.0

log = logging.getLogger(__name__)


def application_close_code(code: int) -> int:
    """Return a close code a server may send: 1000, or 4000 + the RFC 6455 meaning.

    Daphne (autobahn) refuses any other server close code, so 1002 (protocol
    error) goes out as 4002, 1008 (policy violation) as 4008, and so on.
    """
    return code if code == 1000 or 3000 <= code <= 4999 else 4000 + code % 1000


class PushConsumer(AsyncConsumer):
    connection_class: type[PushConnection]
    # Daphne (autobahn) refuses to send a WebSocket message over 1 MiB. SockJS
    # sessions have no such limit and carry text only, so they never split.
    max_message_bytes = 1024 * 1024

    # -- lifecycle ----------------------------------------------------------

    async def __call__(self, scope, receive, send):
        """Run the consumer as Channels' AsyncConsumer does, but outlive a lost channel layer.

        Channels ends the consumer (and Daphne closes the socket) when a
        channel-layer receive raises; while Redis fails over that is every
        socket of the node. The receive is retried instead, and the rank hub
        re-syncs the connection once it hears Redis again.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = self._layer_receive
        self.base_send = send
        try:
            await await_many_dispatch([receive, self.channel_receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            channel_forget(self.channel_layer, self.channel_name)

    async def _layer_receive(self):
        pause = 0.1
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                redis_clients.watch.lost()
                log.debug("channel layer unreachable (%s); trying again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, LAYER_RETRY_MAX_SECONDS)

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message):
        self.connection = self.connection_class(self, self.channel_name, self.scope)
        await self.send({"type": "websocket.accept", "subprotocol": self.subprotocol()})

    def subprotocol(self) -> str | None:
        return None

    async def websocket_receive(self, message):
        data = message.get("text")
        await self.connection.receive(data if data is not None else message.get("bytes") or b"")

    async def websocket_disconnect(self, message):
        await self.connection.release()
        raise StopConsumer()

    # -- transport for the connection ------------------------------------------

    async def send_data(self, data: bytes | str) -> None:
        key = "text" if isinstance(data, str) else "bytes"
        await self.send({"type": "websocket.send", key: data})

    async def close(self, code: int = 1000) -> None:
        self.connection.closed = True
        await self.send({"type": "websocket.close", "code": application_close_code(code)})

    # -- channel-layer events ---------------------------------------------------

    async def customer_event(self, message):
        await self.connection.layer_message(message)

    async def counselor_event(self, message):
        await self.connection.layer_message(message)


class StompConsumer(PushConsumer):
    """``/ws/stomp``: STOMP 1.0-1.2 frames in WebSocket messages."""

    connection_class: type[StompConnection] = StompConnection
    tier = "stomp"

    def subprotocol(self) -> str | None:
        # Clients that offer STOMP subprotocols fail the handshake unless one is
        # selected; stomp.py, stompman and SockJS offer none and get none.
        offered = self.scope.get("subprotocols") or []
        return next((p for p in STOMP_SUBPROTOCOLS if p in offered), None)


class RawJsonConsumer(PushConsumer):
    """``/ws/raw``: the same messages as plain JSON text."""

    connection_class = JsonConnection
    tier = "raw"
