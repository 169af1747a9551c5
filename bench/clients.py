"""Load-side clients: asyncio STOMP-over-WebSocket subscribers and a keep-alive HTTP client.

STOMP frames are written and split by hand (the harness needs only CONNECT,
SUBSCRIBE and MESSAGE bodies) over the harness's own lean WebSocket client
(``bench/wsclient.py``), and every rank message is stamped with
``time.monotonic()`` the moment its WebSocket message arrived.
"""

import asyncio
import json
from collections.abc import Callable, Iterable

from bench import wsclient

OnMessage = Callable[[dict, float], None]
CLOSE_BATCH = 200


def stomp_frame(command: str, headers: dict, body: str = "") -> str:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items()), "", body]
    return "\n".join(lines) + "\x00"


def split_frames(data: str | bytes) -> Iterable[tuple[str, str]]:
    """Yield (command, body) of each frame in one WebSocket message (heart-beat EOLs skipped)."""
    text = data.decode() if isinstance(data, bytes) else data
    for chunk in text.split("\x00"):
        chunk = chunk.lstrip("\r\n")
        if chunk:
            head, _, body = chunk.partition("\n\n")
            yield head.partition("\n")[0], body


class StompSocket:
    """One STOMP session over a WebSocket; every MESSAGE body goes to ``on_message``."""

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.errors: list[str] = []
        self.ws: wsclient.WsConnection | None = None
        self._connected: asyncio.Future = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, url: str, connect_headers: dict, on_message: OnMessage, origin: str | None = None):
        sock = cls(on_message)
        sock.ws = await wsclient.connect(url, sock._received, origin=origin, subprotocols=["v12.stomp"], timeout=60)
        headers = {"accept-version": "1.2", "heart-beat": "0,0", **connect_headers}
        await sock.ws.send(stomp_frame("CONNECT", headers))
        try:
            command, body = await asyncio.wait_for(asyncio.shield(sock._connected), 60)
        except BaseException:
            sock.ws.transport.abort()
            raise
        if command != "CONNECTED":
            await sock.ws.close()
            raise RuntimeError(f"STOMP CONNECT refused: {command} {body[:200]}")
        return sock

    async def subscribe(self, destination: str, sub_id: str = "0") -> None:
        await self.ws.send(stomp_frame("SUBSCRIBE", {"id": sub_id, "destination": destination, "ack": "auto"}))

    async def send(self, destination: str, body: str) -> None:
        await self.ws.send(stomp_frame("SEND", {"destination": destination, "content-type": "application/json"}, body))

    def _received(self, data: str | bytes, now: float) -> None:
        """Called by the connection for each WebSocket message, ``now`` being when it arrived."""
        for command, body in split_frames(data):
            if command == "MESSAGE":
                self.on_message(json.loads(body), now)
            elif not self._connected.done():
                self._connected.set_result((command, body))  # CONNECTED, or the ERROR refusing it
            elif command == "ERROR":
                self.errors.append(body[:200])

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close(timeout=5)


class RankState:
    """What one waiting client holds now, and whether it reached the rank a wave expects."""

    __slots__ = ("expected", "hit_at", "key", "messages", "rank", "sock", "stale", "status", "version", "wave")

    def __init__(self, key: int) -> None:
        self.key = key  # registration id (HearO) or seat index (RabbitMQ)
        self.rank: int | None = None
        self.version = -1
        self.status = ""
        self.messages = 0
        self.stale = 0
        self.expected: int | None = None
        self.hit_at: float | None = None
        self.wave: Wave | None = None
        self.sock: StompSocket | None = None

    def on_message(self, body: dict, now: float) -> None:
        self.messages += 1
        self.status = body.get("status", "")
        if self.status != "WAITING":
            return
        version = body.get("version", 0)
        if version < self.version:
            self.stale += 1  # the page drops older versions, and so do we
            return
        self.version, self.rank = version, body.get("rank")
        if self.wave is not None:
            self.wave.seen(self, now)


class Wave:
    """One queue change: the clients whose rank must change, and when each got it right."""

    def __init__(self, expected: dict[RankState, int]) -> None:
        self.left = len(expected)
        self.wrong = 0
        self.done = asyncio.Event()
        self.hits: list[float] = []
        self.states = list(expected)
        for state, rank in expected.items():
            state.expected, state.hit_at, state.wave = rank, None, self
        if not self.left:
            self.done.set()

    def seen(self, state: RankState, now: float) -> None:
        if state.hit_at is not None:
            return
        if state.rank != state.expected:
            self.wrong += 1  # an intermediate or wrong rank; a later message may fix it
            return
        state.hit_at = now
        self.hits.append(now)
        self.left -= 1
        if self.left == 0:
            self.done.set()

    async def wait(self, t0: float, bound: float) -> dict:
        """Wait until every client holds its new rank (or ``bound`` s passed); return the result."""
        try:
            await asyncio.wait_for(self.done.wait(), bound)
        except TimeoutError:
            pass
        for state in self.states:
            state.wave = None
        latency = max(self.hits) - t0 if self.hits and not self.left else None
        return {"affected": len(self.states), "missing": self.left, "wrong_msgs": self.wrong, "latency": latency}


async def open_many(factories: list[Callable], concurrency: int = 64) -> list[Exception | None]:
    """Run connection factories with bounded concurrency; return each one's exception or None."""
    gate = asyncio.Semaphore(concurrency)

    async def one(factory):
        async with gate:
            try:
                await factory()
            except Exception as exc:
                return exc
            return None

    return await asyncio.gather(*(one(f) for f in factories))


async def close_many(socks: Iterable[StompSocket]) -> None:
    # In batches: thousands of simultaneous disconnects exhaust a node's Redis pool (see RESULTS.md).
    socks = [s for s in socks if s is not None]
    for i in range(0, len(socks), CLOSE_BATCH):
        await asyncio.gather(*(s.close() for s in socks[i : i + CLOSE_BATCH]), return_exceptions=True)
        await asyncio.sleep(0.05)


# -- HTTP/1.1 keep-alive ------------------------------------------------------------------


class HttpConn:
    """A minimal keep-alive HTTP/1.1 client connection (Content-Length or chunked bodies)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> "HttpConn":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def request(self, method: str, path: str, headers: dict | None = None, body: dict | None = None):
        """Send one request and return (status, parsed JSON body or None).

        A connection the server closed while idle (Daphne after 60 s, Uvicorn after its keep-alive
        timeout) is reopened first, as any HTTP/1.1 client does.
        """
        if self.writer is None or self.writer.is_closing() or self.reader.at_eof():
            self.close()
            await self.open()
        payload = json.dumps(body).encode() if body is not None else b""
        head = {"Host": f"127.0.0.1:{self.port}", "Content-Length": str(len(payload)), **(headers or {})}
        if body is not None:
            head["Content-Type"] = "application/json"
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + payload)
        status, data = await self._response()
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    async def _response(self) -> tuple[int, bytes]:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        if "content-length" in fields:
            return status, await self.reader.readexactly(int(fields["content-length"]))
        body = b""
        while fields.get("transfer-encoding") == "chunked":
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def http_call(port: int, method: str, path: str, auth: str | None = None, body: dict | None = None):
    """Make one request on a fresh connection; return (status, JSON body)."""
    conn = await HttpConn(port).open()
    try:
        return await conn.request(method, path, {"Authorization": auth} if auth else None, body)
    finally:
        conn.close()
