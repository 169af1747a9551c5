"""SockJS sessions: a message queue with at most one receiving connection.

Sessions live in the process that opened them (a load balancer must keep a
session's requests on one node, sticky by the ``/{server}/{session}/`` path
segment). A session with no receiving connection for ``disconnect_delay``
seconds is gone: its handler is told, so a vanished STOMP client loses its
subscriptions.
"""

import asyncio
import logging
from collections.abc import Callable

from realtime.sockjs import framing

log = logging.getLogger(__name__)


class Handler:
    """What a session carries: STOMP, or a conformance service such as echo."""

    async def opened(self, session: "Session") -> None: ...

    async def message(self, session: "Session", text: str) -> None: ...

    async def closed(self, session: "Session") -> None: ...


class Session:
    def __init__(self, sid: str, handler: Handler, scope: dict, *, disconnect_delay: float) -> None:
        self.sid = sid
        self.handler = handler
        self.scope = scope
        self.disconnect_delay = disconnect_delay
        self.outbox: list[str] = []
        self.close_frame: str | None = None
        self.close_reason: tuple[int, str] | None = None  # what a WebSocket's close frame says
        self.receiver: object | None = None
        self.opened = False
        self.gone = False
        self.wakeup = asyncio.Event()
        self._expiry: asyncio.Task | None = None
        self.on_gone: Callable[[Session], None] | None = None

    # -- the application side -------------------------------------------------

    def send(self, text: str) -> None:
        if self.close_frame is None:
            self.outbox.append(text)
            self.wakeup.set()

    def close(self, code: int = framing.GO_AWAY[0], reason: str = framing.GO_AWAY[1]) -> None:
        if self.close_frame is None:
            self.close_reason = (code, reason)
            self.close_frame = framing.close(code, reason)
            self.wakeup.set()

    async def deliver(self, texts: list[str]) -> None:
        for text in texts:
            if self.close_frame is not None:
                return
            await self.handler.message(self, text)

    # -- the transport side ---------------------------------------------------

    def attach(self, receiver: object) -> bool:
        """Make ``receiver`` the one receiving connection; False if another holds it."""
        if self.receiver is not None:
            return False
        self.receiver = receiver
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        return True

    def detach(self, receiver: object, *, interrupted: bool = False) -> None:
        """Release the receiving slot; start the countdown to the session's end."""
        if self.receiver is not receiver:
            return
        self.receiver = None
        if interrupted:
            # The network dropped a receiving request: messages may be lost.
            self.close(*framing.INTERRUPTED)
        self._expiry = asyncio.get_running_loop().create_task(self._expire())

    def next_frame(self) -> str | None:
        """Return the next frame to write (open, messages, close), or None to wait."""
        if not self.opened:
            self.opened = True
            return framing.OPEN
        if self.outbox:
            texts, self.outbox = self.outbox, []
            return framing.messages(texts)
        self.wakeup.clear()
        return self.close_frame

    async def wait(self, timeout: float) -> bool:
        """Wait until there is something to write; False on timeout (time for a heartbeat)."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                await self.wakeup.wait()
            return True
        except TimeoutError:
            return False

    async def _expire(self) -> None:
        await asyncio.sleep(self.disconnect_delay)
        if self.receiver is None:
            await self.end()

    async def end(self) -> None:
        """Forget the session and tell its handler (once)."""
        if self.gone:
            return
        self.gone = True
        self.close()
        if self.on_gone is not None:
            self.on_gone(self)
        try:
            await self.handler.closed(self)
        except Exception:
            log.exception("SockJS handler failed while closing %s", self.sid)


class Registry:
    """The sessions of one service in this process."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    def get(self, sid: str) -> Session | None:
        return self.sessions.get(sid)

    async def create(self, sid: str, handler: Handler, scope: dict, *, disconnect_delay: float) -> Session:
        session = Session(sid, handler, scope, disconnect_delay=disconnect_delay)
        session.on_gone = lambda s: self.sessions.pop(s.sid, None) if self.sessions.get(s.sid) is s else None
        self.sessions[sid] = session
        await handler.opened(session)
        return session
