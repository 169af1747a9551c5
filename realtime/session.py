"""Pure STOMP server session: bytes in -> events; decisions in -> bytes out.

Like h11's connection object, the session never does I/O. The consumer feeds
it what the socket received, acts on the events (authenticates, authorises a
destination, joins a group) and sends the bytes the session hands back. The
session owns everything STOMP itself defines: CONNECT negotiation, the
subscription table, message ids and ack ids (which messages an ACK settles),
transactions (what a COMMIT releases), receipts, heart-beat timing.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from realtime.session_events import (
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    Event,
    FrameHeld,
    HeartbeatReceived,
    SendRequested,
    SubscribeRequested,
    TransactionAborted,
    TransactionBegun,
    TransactionCommitted,
    UnsubscribeRequested,
)
from realtime.stomp import (
    HEARTBEAT,
    Frame,
    Heartbeat,
    LocalProtocolError,
    Parser,
    ProtocolError,
    StompError,
    serialize,
    serialize_head,
)

__all__ = [
    "AckReceived",
    "ConnectRequested",
    "DisconnectRequested",
    "Event",
    "FrameHeld",
    "HeartbeatReceived",
    "SendRequested",
    "StompSession",
    "SubscribeRequested",
    "TransactionAborted",
    "TransactionBegun",
    "TransactionCommitted",
    "TransactionLimits",
    "UnsubscribeRequested",
]

ACK_MODES = ("auto", "client", "client-individual")
JSON = "application/json"
JSON_BYTES = JSON.encode()
_HEART_BEAT = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*")

# Session states, in the only order they can occur.
_AWAITING_CONNECT = "awaiting-connect"
_CONNECTING = "connecting"  # CONNECT seen, consumer still deciding
_CONNECTED = "connected"
_DISCONNECTING = "disconnecting"  # DISCONNECT seen, RECEIPT not yet produced
_CLOSED = "closed"


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


def _without_receipt(frame: Frame) -> Frame:
    """Return `frame` minus its receipt header: it was already answered."""
    return dataclasses.replace(frame, headers=tuple(h for h in frame.headers if h[0] != "receipt"))


def _one_line(text: str) -> str:
    """Flatten text for a header that an unescaped (pre-1.2) frame must carry."""
    return text.replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class TransactionLimits:
    """What one connection may hold in transactions, and in unsettled acks."""

    open: int = 16  # transactions open at once
    frames: int = 1000  # SEND/ACK/NACK frames held by one transaction
    bytes: int = 8 * 1024 * 1024  # body bytes held by one transaction
    remembered: int = 4096  # finished ids kept to refuse their reuse
    unacked: int = 4096  # pending ack ids per subscription


@dataclass
class _Transaction:
    frames: list[Frame] = dataclasses.field(default_factory=list)
    size: int = 0


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
        limits: TransactionLimits | None = None,
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
        # Subscription id -> the pre-encoded start of its plain MESSAGE frames (see ``message``).
        self._heads: dict[str, bytes] = {}
        self._counter = itertools.count(1)
        self._last_inbound = self._last_outbound = clock()
        self.limits = limits or TransactionLimits()
        self.last_message_id = ""  # the message-id of the newest MESSAGE produced
        # Pending ack ids per subscription, oldest first (client modes only).
        self._unacked: dict[str, OrderedDict[str, None]] = {}
        self._ack_owner: dict[str, str] = {}  # pending ack id -> subscription id
        self._transactions: dict[str, _Transaction] = {}
        # Ids of finished transactions: a connection must not reuse one (spec 1.2).
        self._finished: OrderedDict[str, None] = OrderedDict()

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

    @property
    def open_transactions(self) -> tuple[str, ...]:
        """Return the ids of transactions begun and not yet committed or aborted."""
        return tuple(self._transactions)

    def unacked(self, subscription_id: str) -> tuple[str, ...]:
        """Return the subscription's ack ids not yet settled, oldest first."""
        return tuple(self._unacked.get(subscription_id, ()))

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

    def _on_send(self, frame: Frame) -> SendRequested | FrameHeld:
        destination = _required(frame, "destination")
        if frame.get("transaction") is not None:
            return self._hold(frame, destination)
        return SendRequested(frame, destination)

    def _on_ack(self, frame: Frame) -> AckReceived | FrameHeld:
        self._ack_id(frame)  # a frame without its id is refused now, not at COMMIT
        if frame.get("transaction") is not None:
            return self._hold(frame, None)
        return self._settle(frame)

    def _ack_id(self, frame: Frame) -> str:
        # 1.2 acks by the MESSAGE's ack header (sent back as id); 1.0/1.1 by message-id.
        return _required(frame, "id" if self._version == "1.2" else "message-id")

    def _settle(self, frame: Frame) -> AckReceived:
        """Return the ACK/NACK's effect and forget the ack ids it settles."""
        ack_id, nack = self._ack_id(frame), frame.command == "NACK"
        sid = self._ack_owner.get(ack_id)
        if sid is None:
            return AckReceived(frame, ack_id, nack)
        pending = self._unacked[sid]
        ids = list(pending)
        # client mode is cumulative: the message and every one sent before it.
        settled = ids[: ids.index(ack_id) + 1] if self._subscriptions[sid][1] == "client" else [ack_id]
        for settled_id in settled:
            del pending[settled_id], self._ack_owner[settled_id]
        return AckReceived(frame, ack_id, nack, sid, tuple(settled))

    def _on_begin(self, frame: Frame) -> TransactionBegun:
        tx = _required(frame, "transaction")
        if tx in self._transactions or tx in self._finished:
            raise _reject(frame, "transaction id reused", f"transaction {tx[:64]!r} was already begun")
        if len(self._transactions) >= self.limits.open:
            raise _reject(frame, "too many transactions", f"at most {self.limits.open} open at once")
        self._transactions[tx] = _Transaction()
        return TransactionBegun(frame, tx)

    def _hold(self, frame: Frame, destination: str | None) -> FrameHeld:
        """Keep a SEND/ACK/NACK in its transaction until COMMIT or ABORT."""
        tx = self._open_transaction(frame)
        held = self._transactions[tx]
        if len(held.frames) >= self.limits.frames or held.size + len(frame.body) > self.limits.bytes:
            detail = f"at most {self.limits.frames} frames and {self.limits.bytes} body bytes per transaction"
            raise _reject(frame, "transaction too large", detail)
        held.frames.append(frame)
        held.size += len(frame.body)
        return FrameHeld(frame, tx, destination)

    def _on_commit(self, frame: Frame) -> TransactionCommitted:
        tx = self._open_transaction(frame)
        events = tuple(self._effect(_without_receipt(f)) for f in self._finish(tx).frames)
        return TransactionCommitted(frame, tx, events)

    def _effect(self, frame: Frame) -> SendRequested | AckReceived:
        # Acks settle at COMMIT, against what is pending then, in the order sent.
        if frame.command == "SEND":
            return SendRequested(frame, _required(frame, "destination"))
        return self._settle(frame)

    def _on_abort(self, frame: Frame) -> TransactionAborted:
        tx = self._open_transaction(frame)
        self._finish(tx)
        return TransactionAborted(frame, tx)

    def _open_transaction(self, frame: Frame) -> str:
        """Return the frame's transaction id, or reject one that is not open."""
        tx = _required(frame, "transaction")
        if tx not in self._transactions:
            raise _reject(frame, "unknown transaction", f"transaction {tx[:64]!r} is not open")
        return tx

    def _finish(self, tx: str) -> _Transaction:
        """Close transaction `tx` and remember its id (a bounded number of them)."""
        self._finished[tx] = None
        while len(self._finished) > self.limits.remembered:
            self._finished.popitem(last=False)
        return self._transactions.pop(tx)

    def _on_disconnect(self, frame: Frame) -> DisconnectRequested:
        self._state = _DISCONNECTING
        # Spec 1.2: a transaction not committed is aborted by DISCONNECT (or a lost socket).
        self._transactions.clear()
        return DisconnectRequested(frame, frame.get("receipt"))

    # Commands a connected client may send.
    _HANDLERS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "SUBSCRIBE": "_on_subscribe",
            "UNSUBSCRIBE": "_on_unsubscribe",
            "SEND": "_on_send",
            "ACK": "_on_ack",
            "NACK": "_on_ack",
            "BEGIN": "_on_begin",
            "COMMIT": "_on_commit",
            "ABORT": "_on_abort",
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
        self._heads.pop(event.id, None)
        return self.receipt_for(event.frame)

    def unsubscribe(self, event: UnsubscribeRequested) -> bytes:
        """Stop delivering to `event`'s subscription; return its RECEIPT, if asked.

        Its unsettled ack ids are forgotten: an ACK for one settles nothing.
        """
        self._subscriptions.pop(event.id, None)
        self._heads.pop(event.id, None)
        for ack_id in self._unacked.pop(event.id, {}):
            del self._ack_owner[ack_id]
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
        content_type: str | None = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """Return a MESSAGE for an accepted subscription, with a fresh message-id."""
        try:
            destination, ack = self._subscriptions[subscription_id]
        except KeyError:
            raise LocalProtocolError("unknown subscription", repr(subscription_id)) from None
        if ack == "auto" and content_type == JSON and not headers:
            return self._plain_message(subscription_id, destination, body)
        message_id = f"{self.session_id}-{next(self._counter)}"
        required = {
            "subscription": subscription_id,
            "destination": destination,
            "message-id": message_id,
        }
        if ack != "auto":
            # Opaque to the client, echoed back as ACK id; message-id is already unique.
            required["ack"] = message_id
            self._pending(subscription_id, message_id)
        self.last_message_id = message_id
        if content_type is not None:
            required["content-type"] = content_type
        # Callers may add headers but never shadow the ones routing depends on.
        extra = {k: v for k, v in (headers or {}).items() if k not in required and k != "content-length"}
        return self._send(Frame.build("MESSAGE", {**required, **extra}, body))

    def _plain_message(self, subscription_id: str, destination: str, body: bytes | str) -> bytes:
        """Return the hub's everyday frame (auto ack, JSON, no extra headers) from a pre-encoded head.

        The same bytes ``serialize`` would produce (a test holds them equal);
        only the message-id's number, the length and the body differ per frame.
        """
        head = self._heads.get(subscription_id)
        if head is None:
            # The message-id's number is appended per frame (digits need no escaping).
            pairs = (("subscription", subscription_id), ("destination", destination), ("message-id", self.session_id))
            head = serialize_head("MESSAGE", pairs, version=self._version or "1.0")[:-1] + b"-"
            self._heads[subscription_id] = head
        if isinstance(body, str):
            body = body.encode()
        number = next(self._counter)
        self.last_message_id = f"{self.session_id}-{number}"
        self._last_outbound = self._clock()
        if not body:  # serialize writes no content-length for an empty body
            return b"%s%d\ncontent-type:%s\n\n\0" % (head, number, JSON_BYTES)
        return b"%s%d\ncontent-type:%s\ncontent-length:%d\n\n%s\0" % (head, number, JSON_BYTES, len(body), body)

    def _pending(self, subscription_id: str, ack_id: str) -> None:
        """Record an ack id the client owes, forgetting the oldest past the limit."""
        pending = self._unacked.setdefault(subscription_id, OrderedDict())
        pending[ack_id] = None
        self._ack_owner[ack_id] = subscription_id
        # A client that never acks (product topics, where acks change nothing)
        # must not grow this without end; a forgotten id then settles nothing.
        if len(pending) > self.limits.unacked:
            forgotten, _ = pending.popitem(last=False)
            del self._ack_owner[forgotten]

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
        self._close()
        return data

    def _close(self) -> None:
        # Whatever an open transaction held never takes effect (spec 1.2).
        self._transactions.clear()
        self._state = _CLOSED

    def disconnect(self, event: DisconnectRequested) -> bytes:
        """Close the session; return the RECEIPT the client waits for, if asked."""
        data = self.receipt_for(event.frame)
        self._close()
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
