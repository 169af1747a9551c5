"""A lean WebSocket client for the harness: RFC 6455, client side, text and binary messages, no extensions.

The harness's thousands of subscribers live in one process that shares the
machine's two CPUs with the servers under test, so what a client costs per
received message is taken from the servers. With the ``websockets`` library
every message woke a reader task (parse, queue, task switch, ``recv``); here a
connection is an ``asyncio.Protocol`` whose ``data_received`` splits the
frames and hands each complete message to a callback at once, stamped with
the moment its last bytes arrived (the stamp no longer waits for the reader
task's turn on the loop).

Only what the harness needs: the opening handshake (checked: status 101 and
the accept key), frames of any length and fragmentation, ping answered with
pong, the closing handshake, flow control on the sending side.
"""

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_ABNORMAL = 1000, 1002, 1006
MAX_HEAD = 16384

OnMessage = Callable[[str | bytes, float], None]


class HandshakeError(Exception):
    """The server did not switch protocols (another status, or a wrong ``Sec-WebSocket-Accept``)."""


class ConnectionClosedError(Exception):
    """A message was sent on a connection that is closing or closed."""


def accept_key(key: str) -> str:
    # SHA-1 is what RFC 6455 4.2.2 prescribes for the accept key (not a security use).
    return base64.b64encode(hashlib.sha1(key.encode() + GUID, usedforsecurity=False).digest()).decode()


def mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking key (RFC 6455 5.3), as one big-integer operation."""
    n = len(data)
    if not n:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """Encode one frame; a client's frames are masked (RFC 6455 5.1)."""
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | opcode])
    flag = 0x80 if masked else 0
    if n < 126:
        head.append(flag | n)
    elif n < 65536:
        head.append(flag | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(flag | 127)
        head += n.to_bytes(8, "big")
    if not masked:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + mask(payload, key)


class WsConnection(asyncio.Protocol):
    """One client connection; every complete message goes to ``on_message(data, arrived)``."""

    def __init__(self, on_message: OnMessage) -> None:
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future = loop.create_future()  # (status, headers) of the handshake's answer
        self.closed: asyncio.Future = loop.create_future()  # set when the TCP connection is gone
        self.close_code: int | None = None  # the peer's close code, or 1006 if it just went away
        self.subprotocol: str | None = None
        self._opened = False
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = OP_TEXT
        self._close_sent = False
        self._writable: asyncio.Future | None = None  # pending while the transport's buffer is full

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self._buffer + data if self._buffer else data
        if not self._opened:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._fail_handshake(HandshakeError("the handshake's answer has no end"))
                else:
                    self._buffer = buffer
                return
            self._opened = True
            self._answer(buffer[:end].decode("latin-1"))
            buffer = buffer[end + 4 :]
        self._buffer = self._frames(buffer, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        if not self.head.done():
            self.head.set_exception(HandshakeError("the connection closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- frames ------------------------------------------------------------------------

    def _answer(self, text: str) -> None:
        status_line, *lines = text.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not self.head.done():
            self.head.set_result((status, headers))

    def _frames(self, buffer: bytes, now: float) -> bytes:
        """Deliver every complete frame in ``buffer``; return what is left of an incomplete one."""
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            b0, b1 = buffer[pos], buffer[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), pos + 10
            if b1 & 0x80:
                self._protocol_error()  # a server never masks its frames (RFC 6455 5.1)
                return b""
            end = start + length
            if end > size:
                break
            self._frame(b0 & 0x80, b0 & 0x0F, buffer[start:end], now)
            pos = end
        return buffer[pos:]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments is not None:
                self._protocol_error()  # a new message inside a fragmented one
            elif fin:
                self.on_message(payload.decode() if opcode == OP_TEXT else payload, now)
            else:
                self._fragments, self._fragment_opcode = [payload], opcode
        elif opcode == OP_CONT:
            if self._fragments is None:
                self._protocol_error()
                return
            self._fragments.append(payload)
            if fin:
                whole, self._fragments = b"".join(self._fragments), None
                self.on_message(whole.decode() if self._fragment_opcode == OP_TEXT else whole, now)
        elif opcode == OP_PING:
            self._write(frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._close_sent = True
                self._write(frame(OP_CLOSE, payload[:2]))
            if self.transport is not None:
                self.transport.close()
        elif opcode != OP_PONG:
            self._protocol_error()

    def _protocol_error(self) -> None:
        self.close_code = CLOSE_PROTOCOL_ERROR
        if self.transport is not None:
            self.transport.abort()

    def _fail_handshake(self, exc: Exception) -> None:
        if not self.head.done():
            self.head.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- the caller's side --------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``); wait only while the transport's buffer is full."""
        if self._close_sent or self.transport is None or self.transport.is_closing():
            raise ConnectionClosedError(f"the connection is closed (code {self.close_code})")
        if isinstance(message, str):
            self.transport.write(frame(OP_TEXT, message.encode()))
        else:
            self.transport.write(frame(OP_BINARY, message))
        if self._writable is not None and not self._writable.done():
            await self._writable

    async def close(self, code: int = CLOSE_NORMAL, timeout: float = 5.0) -> None:
        """Run the closing handshake; abort the connection if the server does not finish it in ``timeout`` s."""
        if self.transport is None:
            return
        if not self._close_sent and not self.transport.is_closing():
            self._close_sent = True
            self._write(frame(OP_CLOSE, code.to_bytes(2, "big")))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()


async def connect(
    url: str,
    on_message: OnMessage,
    *,
    origin: str | None = None,
    subprotocols: Iterable[str] = (),
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> WsConnection:
    """Open a ``ws://`` connection and finish the opening handshake; raise HandshakeError if it is refused."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// URLs, not {url!r}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    opening = loop.create_connection(lambda: WsConnection(on_message), host, port)
    transport, conn = await asyncio.wait_for(opening, timeout)
    offered = list(subprotocols)
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *([f"Sec-WebSocket-Protocol: {', '.join(offered)}"] if offered else []),
        *([f"Origin: {origin}"] if origin else []),
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        status, answer = await asyncio.wait_for(asyncio.shield(conn.head), timeout)
        if status != 101:
            raise HandshakeError(f"the server answered {status}, not 101 Switching Protocols")
        if answer.get("sec-websocket-accept") != accept_key(key):
            raise HandshakeError("wrong Sec-WebSocket-Accept")
        chosen = answer.get("sec-websocket-protocol")
        if chosen is not None and chosen not in offered:
            raise HandshakeError(f"the server chose a subprotocol not offered: {chosen!r}")
    except BaseException:
        transport.abort()
        raise
    conn.subprotocol = chosen
    return conn
