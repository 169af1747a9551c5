"""The events a STOMP session hands its consumer (frozen, like h11's ``_events``): what the peer asked for.

Pure data: the session (``realtime.session``) makes them, the connection acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.stomp import Frame


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
    """ACK or NACK took effect: settle `ack_ids`, then send receipt_for(event.frame).

    `id` is the MESSAGE's ack header (message-id before 1.2). `ack_ids` are
    every pending ack id of `subscription` the frame settles: that one alone
    in client-individual mode, it and all earlier ones in client mode
    (cumulative). An id that is not pending (auto mode, already settled,
    unsubscribed) settles nothing: `subscription` is None, `ack_ids` empty.
    """

    frame: Frame
    id: str
    nack: bool
    subscription: str | None = None
    ack_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DisconnectRequested:
    """DISCONNECT arrived: send disconnect(event), then close the socket."""

    frame: Frame
    receipt: str | None


@dataclass(frozen=True)
class HeartbeatReceived:
    """A bare EOL arrived; liveness is already recorded."""


@dataclass(frozen=True)
class TransactionBegun:
    """BEGIN opened `transaction`: send receipt_for(event.frame)."""

    frame: Frame
    transaction: str


@dataclass(frozen=True)
class FrameHeld:
    """A SEND, ACK or NACK joined `transaction`: it takes effect on COMMIT.

    Send receipt_for(event.frame) now (the frame was processed: it is held).
    `destination` is the SEND's, so the consumer can refuse it at once.
    """

    frame: Frame
    transaction: str
    destination: str | None


@dataclass(frozen=True)
class TransactionCommitted:
    """COMMIT: act on `events` in order, then send receipt_for(event.frame).

    Their frames lost any receipt header: each was answered when it was held.
    """

    frame: Frame
    transaction: str
    events: tuple[SendRequested | AckReceived, ...]


@dataclass(frozen=True)
class TransactionAborted:
    """ABORT dropped what `transaction` held: send receipt_for(event.frame)."""

    frame: Frame
    transaction: str


Event = (
    ConnectRequested
    | SubscribeRequested
    | UnsubscribeRequested
    | SendRequested
    | AckReceived
    | DisconnectRequested
    | HeartbeatReceived
    | TransactionBegun
    | FrameHeld
    | TransactionCommitted
    | TransactionAborted
)
