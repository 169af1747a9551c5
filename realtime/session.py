"""Pure STOMP server session: bytes in -> events; decisions in -> bytes out.

Like h11's connection object, the session never does I/O. The consumer feeds
it what the socket received, acts on the events (authenticates, authorises a
destination, joins a group) and sends the bytes the session hands back. The
session owns everything STOMP itself defines: CONNECT negotiation, the
subscription table, message ids and ack ids, receipts, heart-beat timing.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from realtime.stomp import HEARTBEAT, Frame, Heartbeat, LocalProtocolError, Parser, ProtocolError, StompError, serialize

__all__ = [
    "AckReceived",
    "ConnectRequested",
    "DisconnectRequested",
    "Event",
    "HeartbeatReceived",
    "SendRequested",
    "StompSession",
    "SubscribeRequested",
    "UnsubscribeRequested",
]

ACK_MODES = ("auto", "client", "client-individual")
_HEART_BEAT = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*")

# Session states, in the only order they can occur.
_AWAITING_CONNECT = "awaiting-connect"
_CONNECTING = "connecting"  # CONNECT seen, consumer still deciding
_CONNECTED = "connected"
_DISCONNECTING = "disconnecting"  # DISCONNECT seen, RECEIPT not yet produced
_CLOSED = "closed"


@dataclass(frozen=True)
class ConnectRequested:
    """CONNECT or STOMP arrived: authenticate, then accept_connect() or error()."""

    frame: Frame
    version: str
    login: str | None
    passcode: str | None
    authorization: str | None
    client_heartbeat: tuple[int, int]
    host: str | None


@dataclass(frozen=True)
class SubscribeRequested:
    """SUBSCRIBE arrived: authorise the destination, then subscribe_accepted() or error()."""

    frame: Frame
    id: str
    destination: str
    ack: str


@dataclass(frozen=True)
class UnsubscribeRequested:
    """UNSUBSCRIBE arrived: leave the group, then send unsubscribe(event)."""

    id: str
    destination: str | None  # None when the id was never subscribed
    frame: Frame


@dataclass(frozen=True)
class SendRequested:
    """SEND arrived: handle it, then send receipt_for(event.frame)."""

    frame: Frame
    destination: str


@dataclass(frozen=True)
class AckReceived:
    """ACK or NACK arrived; `id` is the MESSAGE's ack header (message-id before 1.2)."""

    frame: Frame
    id: str
    nack: bool


@dataclass(frozen=True)
class DisconnectRequested:
    """DISCONNECT arrived: send disconnect(event), then close the socket."""

    frame: Frame
    receipt: str | None


@dataclass(frozen=True)
class HeartbeatReceived:
    """A bare EOL arrived; liveness is already recorded."""


Event = (
    ConnectRequested
    | SubscribeRequested
    | UnsubscribeRequested
    | SendRequested
    | AckReceived
    | DisconnectRequested
    | HeartbeatReceived
)


def _reject(frame: Frame, message: str, detail: str) -> ProtocolError:
    """Return the error for a bad `frame`, carrying its receipt for the ERROR."""
    return ProtocolError(message, detail, receipt_id=frame.get("receipt"))


def _required(frame: Frame, name: str) -> str:
    """Return header `name`, or reject the frame if it is missing or empty."""
    value = frame.get(name)
    if not value:
        detail = f"{frame.command} requires a non-empty {name} header"
        raise _reject(frame, f"missing {name} header", detail)
    return value


def _negotiate_version(frame: Frame, supported: tuple[str, ...]) -> str:
    """Return the highest version both sides speak; no accept-version means 1.0."""
    offered = {v.strip() for v in (frame.get("accept-version") or "1.0").split(",")}
    common = [v for v in supported if v in offered]
    if not common:
        raise ProtocolError(
            "unsupported STOMP version",
            f"Supported protocol versions are {' '.join(supported)}",
        )
    return max(common, key=lambda v: tuple(int(p) for p in v.split(".")))


def _parse_heartbeat(frame: Frame) -> tuple[int, int]:
    """Return the client's (cx, cy); a missing header means (0, 0)."""
    value = frame.get("heart-beat") or "0,0"
    match = _HEART_BEAT.fullmatch(value)
    if match is None:
        raise ProtocolError("invalid heart-beat header", f"heart-beat {value[:40]!r}")
    return int(match.group(1)), int(match.group(2))


def _one_line(text: str) -> str:
    """Flatten text for a header that an unescaped (pre-1.2) frame must carry."""
    return text.replace("\r", " ").replace("\n", " ")


class StompSession:
    """Track one STOMP connection from CONNECT to ERROR or DISCONNECT."""

    def __init__(
        self,
        *,
        session_id: str,
        server_name: str = "HearO/1.0",
        server_heartbeat: tuple[int, int] = (10000, 10000),
        supported_versions: tuple[str, ...] = ("1.0", "1.1", "1.2"),
        heartbeat_tolerance: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        parser: Parser | None = None,
    ) -> None:
        self.session_id = session_id
        self.server_name = server_name
        self.server_heartbeat = server_heartbeat
        self.supported_versions = supported_versions
        self.heartbeat_tolerance = heartbeat_tolerance
        self.outgoing_heartbeat_ms = 0
        self.incoming_heartbeat_ms = 0
        self._clock = clock
        self._parser = parser or Parser()
        self._state = _AWAITING_CONNECT
        self._version: str | None = None
        self._error: ProtocolError | None = None
        self._claimed: dict[str, tuple[str, str]] = {}  # ids the client has used
        self._subscriptions: dict[str, tuple[str, str]] = {}  # ids we deliver to
        self._counter = itertools.count(1)
        self._last_inbound = self._last_outbound = clock()

    # -- state -------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """Return the negotiated version, or None before CONNECTED."""
        return self._version

    @property
    def connected(self) -> bool:
        return self._state == _CONNECTED

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def subscriptions(self) -> Mapping[str, tuple[str, str]]:
        """Return accepted subscriptions as id -> (destination, ack mode)."""
        return MappingProxyType(self._subscriptions)

    def subscriptions_for(self, destination: str) -> list[str]:
        """Return the ids of accepted subscriptions to `destination`."""
        return [sid for sid, (dest, _) in self._subscriptions.items() if dest == destination]

    # -- inbound -----------------------------------------------------------

    def receive_data(self, data: bytes | str) -> list[Event]:
        """Parse `data` and return its events; raise ProtocolError to close."""
        if self._state in (_DISCONNECTING, _CLOSED):
            return []  # the connection is closing; ignore what still trickles in
        if self._error is not None:
            raise self._error
        if data:
            # Any bytes count as liveness, even part of a frame (spec 1.2).
            self._last_inbound = self._clock()
        try:
            return self._events(self._parser.feed(data))
        except ProtocolError as exc:
            self._error = exc
            raise

    def _events(self, items: list[Frame | Heartbeat]) -> list[Event]:
        events: list[Event] = []
        for item in items:
            if self._state == _DISCONNECTING:
                break  # nothing after DISCONNECT counts
            events.append(self._event(item))
        return events

    def _event(self, item: Frame | Heartbeat) -> Event:
        """Map one parsed item to an event, enforcing the state machine."""
        if isinstance(item, Heartbeat):
            return HeartbeatReceived()
        if item.command in ("CONNECT", "STOMP"):
            return self._on_connect(item)
        if self._state != _CONNECTED:
            raise _reject(item, "not connected", f"{item.command} before CONNECTED")
        if item.command not in self._HANDLERS:
            detail = f'Could not interpret command "{item.command}"'
            raise _reject(item, "unknown command", detail)
        handler: Callable[[Frame], Event] = getattr(self, self._HANDLERS[item.command])
        return handler(item)

    def _on_connect(self, frame: Frame) -> ConnectRequested:
        if self._state != _AWAITING_CONNECT:
            raise ProtocolError("already connected", "CONNECT may only be sent once")
        event = ConnectRequested(
            frame=frame,
            version=_negotiate_version(frame, self.supported_versions),
            login=frame.get("login"),
            passcode=frame.get("passcode"),
            # No standard header; accept the spelling Spring-style clients use too.
            authorization=frame.get("Authorization", frame.get("authorization")),
            client_heartbeat=_parse_heartbeat(frame),
            host=frame.get("host"),  # optional in practice: stompjs never sends it
        )
        self._state = _CONNECTING
        return event

    def _on_subscribe(self, frame: Frame) -> SubscribeRequested:
        sid, destination = _required(frame, "id"), _required(frame, "destination")
        ack = frame.get("ack") or "auto"
        if ack not in ACK_MODES:
            raise _reject(frame, "invalid ack mode", f"ack {ack[:40]!r}")
        if sid in self._claimed:
            raise _reject(frame, "duplicate subscription id", f"id {sid!r} is in use")
        self._claimed[sid] = (destination, ack)
        return SubscribeRequested(frame, sid, destination, ack)

    def _on_unsubscribe(self, frame: Frame) -> UnsubscribeRequested:
        sid = _required(frame, "id")
        # Unknown ids are harmless; the consumer just has nothing to leave.
        destination, _ = self._claimed.pop(sid, (None, None))
        return UnsubscribeRequested(sid, destination, frame)

    def _on_send(self, frame: Frame) -> SendRequested:
        return SendRequested(frame, _required(frame, "destination"))

    def _on_ack(self, frame: Frame) -> AckReceived:
        # 1.2 acks by the MESSAGE's ack header (sent back as id); 1.0/1.1 by message-id.
        name = "id" if self._version == "1.2" else "message-id"
        return AckReceived(frame, _required(frame, name), frame.command == "NACK")

    def _on_disconnect(self, frame: Frame) -> DisconnectRequested:
        self._state = _DISCONNECTING
        return DisconnectRequested(frame, frame.get("receipt"))

    # Commands a connected client may send. BEGIN/COMMIT/ABORT are absent on
    # purpose: HearO has no transactions, so they get ERROR like unknown ones.
    _HANDLERS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "SUBSCRIBE": "_on_subscribe",
            "UNSUBSCRIBE": "_on_unsubscribe",
            "SEND": "_on_send",
            "ACK": "_on_ack",
            "NACK": "_on_ack",
            "DISCONNECT": "_on_disconnect",
        }
    )

    # -- outbound ----------------------------------------------------------

    def _send(self, frame: Frame) -> bytes:
        """Serialize `frame` for the wire and note that we just spoke."""
        data = serialize(frame, version=self._version or "1.0")
        self._last_outbound = self._clock()
        return data

    def accept_connect(
        self,
        event: ConnectRequested,
        *,
        heartbeat: tuple[int, int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """Return CONNECTED for `event` and switch to the negotiated version."""
        if self._state != _CONNECTING:
            raise LocalProtocolError("no CONNECT to accept", f"session is {self._state}")
        sx, sy = heartbeat or self.server_heartbeat
        cx, cy = event.client_heartbeat
        self.outgoing_heartbeat_ms = 0 if sx == 0 or cy == 0 else max(sx, cy)
        self.incoming_heartbeat_ms = 0 if sy == 0 or cx == 0 else max(cx, sy)
        self._version = self._parser.version = event.version
        self._state = _CONNECTED
        headers = {
            "version": event.version,
            # Always present, even 0,0: stompman raises KeyError without it.
            "heart-beat": f"{sx},{sy}",
            "server": self.server_name,
            "session": self.session_id,
        }
        extra = {k: v for k, v in (extra_headers or {}).items() if k not in headers}
        return self._send(Frame.build("CONNECTED", {**headers, **extra}))

    def subscribe_accepted(self, event: SubscribeRequested) -> bytes:
        """Start delivering to `event`'s subscription; return its RECEIPT, if asked."""
        self._subscriptions[event.id] = (event.destination, event.ack)
        return self.receipt_for(event.frame)

    def unsubscribe(self, event: UnsubscribeRequested) -> bytes:
        """Stop delivering to `event`'s subscription; return its RECEIPT, if asked."""
        self._subscriptions.pop(event.id, None)
        return self.receipt_for(event.frame)

    def receipt_for(self, frame: Frame) -> bytes:
        """Return RECEIPT for `frame` if it asked for one, else b""."""
        receipt = frame.get("receipt")
        if receipt is None or frame.command in ("CONNECT", "STOMP"):
            return b""
        return self._send(Frame.build("RECEIPT", {"receipt-id": receipt}))

    def message(
        self,
        subscription_id: str,
        body: bytes | str,
        *,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """Return a MESSAGE for an accepted subscription, with a fresh message-id."""
        try:
            destination, ack = self._subscriptions[subscription_id]
        except KeyError:
            raise LocalProtocolError("unknown subscription", repr(subscription_id)) from None
        message_id = f"{self.session_id}-{next(self._counter)}"
        required = {
            "subscription": subscription_id,
            "destination": destination,
            "message-id": message_id,
        }
        if ack != "auto":
            # Opaque to the client, echoed back as ACK id; message-id is already unique.
            required["ack"] = message_id
        if content_type is not None:
            required["content-type"] = content_type
        # Callers may add headers but never shadow the ones routing depends on.
        extra = {k: v for k, v in (headers or {}).items() if k not in required and k != "content-length"}
        return self._send(Frame.build("MESSAGE", {**required, **extra}, body))

    def error(
        self,
        exc_or_message: StompError | str,
        *,
        detail: str = "",
        receipt_id: str | None = None,
    ) -> bytes:
        """Return an ERROR frame and close the session; the consumer closes the socket."""
        if isinstance(exc_or_message, StompError):
            message = exc_or_message.message
            detail = detail or exc_or_message.detail
            receipt_id = receipt_id or exc_or_message.receipt_id
        else:
            message = exc_or_message
        headers = {"message": _one_line(message), "content-type": "text/plain"}
        if receipt_id is not None:
            headers["receipt-id"] = _one_line(receipt_id) if self._version != "1.2" else receipt_id
        if self._version is None:
            # Like RabbitMQ: a refused CONNECT says which versions would work.
            headers["version"] = ",".join(self.supported_versions)
        data = self._send(Frame.build("ERROR", headers, detail))
        self._state = _CLOSED
        return data

    def disconnect(self, event: DisconnectRequested) -> bytes:
        """Close the session; return the RECEIPT the client waits for, if asked."""
        data = self.receipt_for(event.frame)
        self._state = _CLOSED
        return data

    # -- heart-beats -------------------------------------------------------

    def heartbeat(self) -> bytes:
        """Return a heart-beat to send and note that we just spoke."""
        self._last_outbound = self._clock()
        return HEARTBEAT

    def next_heartbeat_in(self, now: float | None = None) -> float | None:
        """Return seconds until a heart-beat is due, or None if we never send them."""
        if not self.connected or not self.outgoing_heartbeat_ms:
            return None
        now = self._clock() if now is None else now
        due = self._last_outbound + self.outgoing_heartbeat_ms / 1000
        return max(0.0, due - now)

    def heartbeat_due(self, now: float | None = None) -> bool:
        """Return True if we have been silent for a whole outgoing interval."""
        remaining = self.next_heartbeat_in(now)
        return remaining is not None and remaining <= 0

    def peer_timed_out(self, now: float | None = None) -> bool:
        """Return True if the peer has been silent past its interval times tolerance."""
        if not self.connected or not self.incoming_heartbeat_ms:
            return False
        now = self._clock() if now is None else now
        limit = self.incoming_heartbeat_ms / 1000 * self.heartbeat_tolerance
        return now - self._last_inbound > limit
