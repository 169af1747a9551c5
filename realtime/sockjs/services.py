"""The SockJS services HearO mounts, and the session handlers they carry.

``/ws/sockjs`` carries STOMP sessions: the same connection class as
``/ws/stomp`` (``realtime.routing`` chooses it), with a SockJS session as its
transport. With
``HEARO_SOCKJS_TEST_SERVICES=1`` the protocol test suite's services are
mounted under ``/sockjs-test/`` (``echo``, ``close``,
``disabled_websocket_echo``, ``cookie_needed_echo``), served by the same code.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.layers import channel_forget
from realtime.sockjs.session import Handler, Registry, Session
from realtime.stomp_connection import StompConnection

log = logging.getLogger(__name__)

CLOSE_REASONS = {1000: "Normal closure", 1002: "Protocol error", 1008: "Policy violation"}


@dataclass
class Service:
    prefix: str
    handler: Callable[[], Handler]
    websocket: bool = True
    cookie_needed: bool = False
    response_limit: int = 128 * 1024
    disconnect_delay: float = 5.0
    heartbeat_delay: float = 25.0
    # Browsers' origins must be allowed ones; the conformance services echo any.
    check_origin: bool = True
    registry: Registry = field(default_factory=Registry)


class SessionTransport:
    """Lets a PushConnection write into a SockJS session."""

    tier = "sockjs"

    def __init__(self, session: Session) -> None:
        self.session = session

    async def send_data(self, data: bytes | str) -> None:
        # SockJS carries text only; STOMP bodies here are JSON text.
        self.session.send(data if isinstance(data, str) else data.decode("utf-8", "replace"))

    async def close(self, code: int = 1000) -> None:
        self.session.close(code, CLOSE_REASONS.get(code, "Closed"))


class StompHandler(Handler):
    """A STOMP session over SockJS, with its own channel-layer channel."""

    def __init__(self, connection_class: type[StompConnection] = StompConnection) -> None:
        self.connection_class = connection_class

    async def opened(self, session: Session) -> None:
        self.layer = get_channel_layer()
        self.channel = await self.layer.new_channel()
        self.connection = self.connection_class(SessionTransport(session), self.channel, session.scope)
        self.pump = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            try:
                await self.connection.layer_message(message)
            except Exception:
                log.exception("SockJS STOMP delivery failed")

    async def message(self, session: Session, text: str) -> None:
        await self.connection.receive(text)

    async def closed(self, session: Session) -> None:
        self.pump.cancel()
        channel_forget(self.layer, self.channel)
        await self.connection.release()


class EchoHandler(Handler):
    async def message(self, session: Session, text: str) -> None:
        session.send(text)


class CloseHandler(Handler):
    async def opened(self, session: Session) -> None:
        session.close()


def build_services(stomp_connection: type[StompConnection] = StompConnection) -> list[Service]:
    """Return the services to mount, ``/ws/sockjs`` serving STOMP with ``stomp_connection``."""
    services = [
        Service(
            "/ws/sockjs",
            partial(StompHandler, stomp_connection),
            response_limit=settings.HEARO_SOCKJS_RESPONSE_LIMIT,
            disconnect_delay=settings.HEARO_SOCKJS_DISCONNECT_DELAY,
        )
    ]
    if settings.HEARO_SOCKJS_TEST_SERVICES:
        base = "/sockjs-test"
        services += [
            Service(f"{base}/echo", EchoHandler, response_limit=4096, check_origin=False),
            Service(f"{base}/close", CloseHandler, check_origin=False),
            Service(f"{base}/disabled_websocket_echo", EchoHandler, websocket=False, check_origin=False),
            Service(f"{base}/cookie_needed_echo", EchoHandler, cookie_needed=True, check_origin=False),
        ]
    return services
