"""Sans-I/O STOMP 1.2 codec: frames in, bytes out, no sockets and no Django.

Modelled on h11: `Frame` is a plain frozen value, `Parser.feed` turns a byte
stream into frames, `serialize` turns a frame into bytes. Errors come in two
kinds: `ProtocolError` (the peer sent something we must reject; answer with
ERROR and close) and `LocalProtocolError` (we tried to send something invalid;
a bug on our side).

Wire rules follow the STOMP 1.2 specification, including the parts real
clients rely on: CRLF or LF line ends, heart-beat EOLs between frames, the
first of a repeated header wins, values are never trimmed, content-length
counts octets, and CONNECT/STOMP/CONNECTED headers are never escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "BODY_COMMANDS",
    "HEARTBEAT",
    "UNESCAPED_COMMANDS",
    "Frame",
    "Heartbeat",
    "LimitExceeded",
    "LocalProtocolError",
    "Parser",
    "ProtocolError",
    "StompError",
    "serialize",
    "serialize_head",
]

HEARTBEAT = b"\n"
"""What a heart-beat looks like on the wire: one LF, never CRLF."""

BODY_COMMANDS = frozenset({"SEND", "MESSAGE", "ERROR"})
"""The only commands that may carry a non-empty body."""

UNESCAPED_COMMANDS = frozenset({"CONNECT", "STOMP", "CONNECTED"})
"""Commands whose headers are never escaped, for 1.0 compatibility."""

DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 + 64 * 1024

_KNOWN_COMMANDS = frozenset(
    {"CONNECT", "STOMP", "CONNECTED", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT"}
    | {"DISCONNECT", "MESSAGE", "RECEIPT", "ERROR"}
)

_COMMAND = re.compile(rb"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)

# Escape tables per protocol version. 1.0 has none; 1.1 has no `\r`, so a CR
# in a 1.1 header is undefined and we refuse to send or accept it.
_DECODE: dict[str, dict[str, str] | None] = {
    "1.0": None,
    "1.1": {"n": "\n", "c": ":", "\\": "\\"},
    "1.2": {"r": "\r", "n": "\n", "c": ":", "\\": "\\"},
}
_ENCODE = {
    version: None if table is None else str.maketrans({v: "\\" + k for k, v in table.items()})
    for version, table in _DECODE.items()
}


class StompError(Exception):
    """Base class: `message` goes into ERROR's header, `detail` into its body."""

    def __init__(self, message: str, detail: str = "", *, receipt_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        # The receipt of the frame that caused the error, echoed as receipt-id.
        self.receipt_id = receipt_id


class ProtocolError(StompError):
    """The peer broke the protocol; answer with ERROR and close."""


class LimitExceeded(ProtocolError):
    """The peer sent a frame larger than we are willing to buffer."""


class LocalProtocolError(StompError):
    """We tried to produce an invalid frame: a bug on our side."""


@dataclass(frozen=True)
class Heartbeat:
    """A bare EOL between frames: the peer is alive, nothing else."""


@dataclass(frozen=True)
class Frame:
    """One STOMP frame; headers keep wire order and repeats."""

    command: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def build(
        cls,
        command: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | str = b"",
    ) -> Frame:
        """Return a frame from a dict or pairs of headers; encode a str body as UTF-8."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        if isinstance(body, str):
            body = body.encode()
        return cls(command, tuple((str(k), str(v)) for k, v in pairs), body)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header `name`: in STOMP the first repeat wins."""
        for key, value in self.headers:
            if key == name:
                return value
        return default


def _unescape(value: str, version: str) -> str:
    """Undo header escaping; an undefined escape is fatal (spec 1.2 "Value Encoding")."""
    table = _DECODE[version]
    if table is None or "\\" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        try:
            return table[match.group(1)]
        except KeyError:
            raise ProtocolError("invalid header escape", f"Undefined escape sequence {match.group(0)!r}") from None

    return _ESCAPE.sub(replace, value)


def _decode_header(line: bytes, *, escaped: bool, version: str) -> tuple[str, str]:
    """Split a header line on its first colon and decode both halves."""
    name, colon, value = line.partition(b":")
    if not colon or not name:
        raise ProtocolError("malformed header", f"Header line {line[:80]!r} has no name")
    if b"\r" in line:
        # The grammar forbids a bare CR; accepting one would let a value in
        # that we could never echo back (e.g. as receipt-id) in 1.0 or 1.1.
        raise ProtocolError("malformed header", f"Bare CR in header line {line[:80]!r}")
    try:
        pair = name.decode(), value.decode()
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in header", f"Header line {line[:80]!r}") from None
    if not escaped:
        return pair
    return _unescape(pair[0], version), _unescape(pair[1], version)


def _content_length(headers: tuple[tuple[str, str], ...]) -> int | None:
    """Return the first content-length as an int, or None when absent."""
    value = next((v for k, v in headers if k == "content-length"), None)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise ProtocolError("invalid content-length", f"content-length {value[:40]!r}")
    return int(value)


class Parser:
    """Turn a STOMP byte stream into frames and heart-beats, across any chunking.

    Buffering is bounded: every limit is checked while data is still arriving,
    so a peer that never sends NUL cannot make us hold more than one frame's
    worth of bytes. After a ProtocolError the parser is poisoned: the
    connection is about to close and the stream position is unknowable.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_headers: int = 64,
        max_header_bytes: int = 8192,
        max_command_bytes: int = 64,
        version: str = "1.2",
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.max_command_bytes = max_command_bytes
        self.version = version
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed input in _buf
        self._scan = 0  # resume searches here so chunked input stays linear
        self._line_start = 0
        self._error: ProtocolError | None = None
        self._reset_frame()

    def _reset_frame(self) -> None:
        """Forget the frame in progress and wait for the next command line."""
        self._start = self._pos
        self._command: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._head_done = False
        self._length: int | None = None

    def feed(self, data: bytes | str) -> list[Frame | Heartbeat]:
        """Buffer `data` and return every frame and heart-beat it completes."""
        if self._error is not None:
            raise self._error
        self._buf += data.encode() if isinstance(data, str) else data
        out: list[Frame | Heartbeat] = []
        try:
            while (item := self._next()) is not None:
                out.append(item)
        except ProtocolError as exc:
            self._error = exc
            raise
        self._compact()
        return out

    def _compact(self) -> None:
        """Drop consumed bytes once per feed, not once per frame."""
        del self._buf[: self._pos]
        self._scan -= self._pos
        self._start -= self._pos
        self._pos = 0

    def _next(self) -> Frame | Heartbeat | None:
        """Return the next complete item, or None when more input is needed."""
        while not self._head_done:
            line = self._read_line()
            if line is None:
                return None
            if self._command is None and not line:
                return Heartbeat()
            self._take_line(line)
        return self._read_body()

    def _read_line(self) -> bytes | None:
        """Consume one line without its EOL, or return None if it is incomplete."""
        limit = self.max_command_bytes if self._command is None else self.max_header_bytes
        end = self._buf.find(b"\n", self._scan)
        if end < 0:
            self._scan = len(self._buf)
            # +1: a CR may be waiting for its LF and does not count.
            if self._scan - self._pos > limit + 1:
                self._line_too_long(limit)
            return None
        line = bytes(self._buf[self._pos : end])
        self._line_start = self._pos
        self._pos = self._scan = end + 1
        line = line[:-1] if line.endswith(b"\r") else line
        if len(line) > limit:
            self._line_too_long(limit)
        return line

    def _line_too_long(self, limit: int) -> None:
        what = "command" if self._command is None else "header line"
        raise LimitExceeded(f"{what} too long: more than {limit} bytes", f"A {what} exceeded {limit} bytes")

    def _take_line(self, line: bytes) -> None:
        """Record a command line, a header line, or the blank line ending the head."""
        if self._command is None:
            self._command = self._parse_command(line)
        elif line:
            self._add_header(line)
            self._check_size(self._pos - self._start + 1)
        else:
            self._finish_head()

    def _parse_command(self, line: bytes) -> str:
        """Accept any token of letters; which commands exist is the session's call."""
        if not _COMMAND.fullmatch(line):
            raise ProtocolError("malformed command", f"Cannot parse command {line[:40]!r}")
        self._start = self._line_start
        return line.decode("ascii")

    def _add_header(self, line: bytes) -> None:
        if len(self._headers) >= self.max_headers:
            raise LimitExceeded(f"too many headers: more than {self.max_headers}", "Too many header lines")
        escaped = self._command not in UNESCAPED_COMMANDS
        self._headers.append(_decode_header(line, escaped=escaped, version=self.version))

    def _finish_head(self) -> None:
        """Check what the head promises about the body before buffering it."""
        self._head_done = True
        self._length = _content_length(tuple(self._headers))
        if self._length:
            self._check_body_allowed()
            self._check_size(self._pos - self._start + self._length + 1)

    def _check_body_allowed(self) -> None:
        if self._command not in BODY_COMMANDS:
            raise ProtocolError("unexpected body", f"{self._command} frames must not have a body")

    def _check_size(self, size: int) -> None:
        if size > self.max_frame_bytes:
            limit = self.max_frame_bytes
            raise LimitExceeded(f"frame too large: {size} bytes > limit {limit}", "Frame too large")

    def _read_body(self) -> Frame | None:
        """Return the frame once its body and NUL have arrived."""
        end = self._body_end()
        if end is None:
            return None
        assert self._command is not None
        frame = Frame(self._command, tuple(self._headers), bytes(self._buf[self._pos : end]))
        self._pos = self._scan = end + 1
        self._reset_frame()
        return frame

    def _body_end(self) -> int | None:
        """Return the index of the terminating NUL, or None if it has not arrived."""
        if self._length is not None:
            end = self._pos + self._length
            if len(self._buf) <= end:
                return None
            if self._buf[end] != 0:
                raise ProtocolError("missing NUL", "content-length bytes not followed by NUL")
            return end
        end = self._buf.find(b"\0", max(self._scan, self._pos))
        # Reject a stray body as soon as its first byte shows, not at the NUL.
        if len(self._buf) > self._pos and self._buf[self._pos] != 0:
            self._check_body_allowed()
        if end < 0:
            self._scan = len(self._buf)
            # The frame will be at least this big once its NUL arrives.
            self._check_size(len(self._buf) - self._start + 1)
            return None
        self._check_size(end + 1 - self._start)
        return end


def _encode_header(text: str, table: dict[int, str] | None, version: str) -> str:
    """Escape one header name or value, refusing what the version cannot carry."""
    if table is None:
        if "\n" in text or "\r" in text:
            raise LocalProtocolError("header cannot hold EOL", f"{text[:80]!r} (unescaped frame)")
        return text
    if "\\" not in text and ":" not in text and "\n" not in text and "\r" not in text:
        return text  # nearly every header: four C-speed scans instead of a per-character translate
    if version == "1.1" and "\r" in text:
        raise LocalProtocolError("header cannot hold CR", f"{text[:80]!r} in STOMP 1.1")
    return text.translate(table)


def _wire_headers(frame: Frame) -> list[tuple[str, str]]:
    """Return the headers to send, adding content-length for a body."""
    headers = list(frame.headers)
    declared = frame.get("content-length")
    if declared is None:
        if frame.body:
            headers.append(("content-length", str(len(frame.body))))
    elif declared != str(len(frame.body)):
        raise LocalProtocolError("wrong content-length", f"{declared} != {len(frame.body)}")
    return headers


def _check_outgoing(frame: Frame) -> None:
    if frame.command not in _KNOWN_COMMANDS and not _COMMAND.fullmatch(frame.command.encode()):
        raise LocalProtocolError("invalid command", repr(frame.command))
    if frame.body and frame.command not in BODY_COMMANDS:
        raise LocalProtocolError("unexpected body", f"{frame.command} frames have no body")


def _header_lines(command: str, headers: Iterable[tuple[str, str]], version: str) -> list[str]:
    table = None if command in UNESCAPED_COMMANDS else _ENCODE[version]
    lines = [command]
    for name, value in headers:
        # An empty or unescaped colon-bearing name would split wrongly on parse.
        if not name or (table is None and ":" in name):
            raise LocalProtocolError("invalid header name", repr(name[:80]))
        lines.append(f"{_encode_header(name, table, version)}:{_encode_header(value, table, version)}")
    return lines


def serialize(frame: Frame, *, version: str = "1.2") -> bytes:
    """Return the wire bytes of `frame` for the negotiated `version`."""
    _check_outgoing(frame)
    lines = _header_lines(frame.command, _wire_headers(frame), version)
    # Joined with LF only: CRLF is legal but stomp.py counts "\r\n" as no beat.
    return ("\n".join(lines) + "\n\n").encode() + frame.body + b"\0"


def serialize_head(command: str, headers: Iterable[tuple[str, str]], *, version: str = "1.2") -> bytes:
    """Return the first lines of a frame, each ending in LF: a prefix to pre-encode once and reuse.

    ``serialize`` of the same frame starts with exactly these bytes.
    """
    return ("\n".join(_header_lines(command, headers, version)) + "\n").encode()
