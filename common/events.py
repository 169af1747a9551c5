"""The event vocabulary: the JSON bodies clients receive, and the channel-layer groups.

Every builder returns plain dicts of str/int/None (STYLE habit 5): ids as
strings, times as epoch milliseconds, field names in camelCase as in the
seed's messages. The REST polling endpoint returns the very same dicts.
"""

import json
import time
from datetime import datetime

# The group the rank hub joins without Redis (the in-memory layer, one process);
# with Redis a queue change is a PUBLISH on settings.HEARO_QUEUE_BROADCAST instead.
QUEUE_GROUP = "hearo.queue"


def customer_group(customer_id: str) -> str:
    """Return the channel-layer group of one customer's connections."""
    return f"customer.{customer_id}"


def counselor_group(counselor_id: str) -> str:
    """Return the channel-layer group of one counselor's connections."""
    return f"counselor.{counselor_id}"


# One encoder for every pushed body: ``json.dumps`` with ``separators`` builds a
# new JSONEncoder per call, a measurable share of a frame's cost in a fan-out.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def epoch_ms(when: datetime | None = None) -> int:
    """Return a datetime (or now) as integer epoch milliseconds."""
    if when is None:
        return int(time.time() * 1000)
    return int(when.timestamp() * 1000)


def queue_changed(*, version: int, queue_ids: list[str] | None, reason: str, language: str | None = None) -> dict:
    """Return the broadcast every node's hub hears: which queues changed, and why.

    ``language`` narrows an urgent join to its line, so only the customers of
    that line are told someone was let in ahead of them.
    """
    body = {"type": "queue.changed", "version": version, "queues": queue_ids, "reason": reason}
    if language is not None:
        body["language"] = language
    return body


# Why a matched customer is back in line, as the page explains it.
REQUEUE_REASONS = ("call_failed", "released", "counselor_no_show", "call_dropped")


def waiting(
    *,
    customer_id: str,
    registration_id: int,
    queue_id: str,
    rank: int,
    version: int,
    eta: int | None,
    eta_reason: str | None = None,
    reason: str | None = None,
    timestamp: int | None = None,
) -> dict:
    """Return a WAITING message: the rank in the customer's line, and the estimate.

    ``eta`` None comes with ``eta_reason`` (``no_counselor_online``, ``closed``);
    ``reason`` says why the rank moved when it is news (``urgent_ahead``,
    ``overflow``), or why the visit is back in line after a hand-off that
    failed (one of ``REQUEUE_REASONS``).
    """
    body = {
        "customerId": customer_id,
        "registrationId": registration_id,
        "queueId": queue_id,
        "status": "WAITING",
        "rank": rank,
        "estimatedWaitSeconds": eta,
        "version": version,
        "timestamp": epoch_ms() if timestamp is None else timestamp,
    }
    if eta is None and eta_reason:
        body["estimatedWaitReason"] = eta_reason
    if reason:
        body["reason"] = reason
    return body


class Encoded(dict):
    """A body that carries its compact JSON, written once by whoever built it (``json``, UTF-8)."""

    __slots__ = ("json",)


OPTIONAL = ("estimatedWaitReason", "reason")  # the WAITING keys present only when they say something


class WaitingBodies:
    """The WAITING bodies of one hub refresh in one line: what all of them share is encoded once.

    ``body`` returns the dict ``waiting`` would, carrying the very bytes
    ``compact_json`` would write for it (a test holds them equal): per
    recipient only the ids, the rank and the estimate are formatted.
    """

    def __init__(self, *, queue_id: str, version: int, timestamp: int) -> None:
        self.queue_id, self.version, self.timestamp = queue_id, version, timestamp
        self._rank = f',"queueId":{compact_json(queue_id)},"status":"WAITING","rank":'.encode()
        self._tail = f',"version":{int(version)},"timestamp":{int(timestamp)}'.encode()
        # The optional keys' bytes, by what decides them: few kinds of body per refresh.
        self._extras: dict[tuple[str | None, str | None], bytes] = {}

    def body(
        self,
        *,
        customer_id: str,
        customer_json: bytes,
        registration_id: int,
        rank: int,
        eta: int | None,
        eta_reason: str | None = None,
        reason: str | None = None,
    ) -> Encoded:
        """Return one recipient's body; ``customer_json`` is ``compact_json(customer_id)``, kept by the caller."""
        body = Encoded(
            waiting(
                customer_id=customer_id,
                registration_id=registration_id,
                queue_id=self.queue_id,
                rank=rank,
                version=self.version,
                eta=eta,
                eta_reason=eta_reason,
                reason=reason,
                timestamp=self.timestamp,
            )
        )
        # The keys ``waiting`` adds only sometimes come last, in its order;
        # their values depend only on the reason given for no estimate and the reason.
        kind = (eta_reason if eta is None else None, reason)
        extra = self._extras.get(kind)
        if extra is None:
            extra = self._extras[kind] = b"".join(
                b',"%s":%s' % (key.encode(), compact_json(body[key]).encode()) for key in OPTIONAL if key in body
            )
        if type(eta) is int:
            eta_json = b"%d" % eta
        else:
            eta_json = b"null" if eta is None else compact_json(eta).encode()
        body.json = b'{"customerId":%s,"registrationId":%d%s%d,"estimatedWaitSeconds":%s%s%s}' % (
            customer_json,
            registration_id,
            self._rank,
            rank,
            eta_json,
            self._tail,
            extra,
        )
        return body


def matched(
    *,
    customer_id: str,
    registration_id: int,
    queue_id: str,
    identity: str,
    room_name: str,
    match_id: int,
    counselor_name: str,
    join_deadline: datetime,
) -> dict:
    """Return a MATCHED message: whom the customer will talk to, and until when it may join.

    ``counselorName`` is what the page shows; the room name is only for the call.
    """
    return {
        "customerId": customer_id,
        "registrationId": registration_id,
        "queueId": queue_id,
        "status": "MATCHED",
        "identity": identity,
        "roomName": room_name,
        "matchId": match_id,
        "counselorName": counselor_name,
        "joinDeadline": epoch_ms(join_deadline),
        "timestamp": epoch_ms(),
    }


def in_call(
    *,
    customer_id: str,
    registration_id: int,
    queue_id: str,
    identity: str,
    room_name: str,
    match_id: int,
    counselor_name: str,
    join_deadline: datetime,
    interrupted_side: str = "",
    reconnect_until: datetime | None = None,
) -> dict:
    """Return an IN_CALL message; while one side is gone, ``interrupted`` says who and until when."""
    body = matched(
        customer_id=customer_id,
        registration_id=registration_id,
        queue_id=queue_id,
        identity=identity,
        room_name=room_name,
        match_id=match_id,
        counselor_name=counselor_name,
        join_deadline=join_deadline,
    )
    body["status"] = "IN_CALL"
    if interrupted_side and reconnect_until is not None:
        body["interrupted"] = {"side": interrupted_side, "reconnectUntil": epoch_ms(reconnect_until)}
    return body


def terminal(*, customer_id: str, registration_id: int, queue_id: str, status: str, reason: str) -> dict:
    """Return the last message of a visit: COMPLETED, CANCELLED or EXPIRED."""
    return {
        "customerId": customer_id,
        "registrationId": registration_id,
        "queueId": queue_id,
        "status": status,
        "reason": reason,
        "timestamp": epoch_ms(),
    }


def match_assigned(
    *,
    registration_id: int,
    customer_id: str,
    identity: str,
    room_name: str,
    match_id: int,
    display_name: str,
    queue_id: str,
    language: str,
    urgent: bool,
    join_deadline: datetime,
) -> dict:
    return {
        "type": "MATCH_ASSIGNED",
        "registrationId": registration_id,
        "customerId": customer_id,
        "customerName": display_name,
        "queueId": queue_id,
        "language": language,
        "urgent": urgent,
        "identity": identity,
        "roomName": room_name,
        "matchId": match_id,
        "joinDeadline": epoch_ms(join_deadline),
        "timestamp": epoch_ms(),
    }


def match_started(*, match_id: int, registration_id: int, customer_id: str, room_name: str) -> dict:
    """Tell the counselor both sides are in the call."""
    return {
        "type": "MATCH_STARTED",
        "matchId": match_id,
        "registrationId": registration_id,
        "customerId": customer_id,
        "roomName": room_name,
        "timestamp": epoch_ms(),
    }


def match_ended(
    *, match_id: int, room_name: str, reason: str, by: str | None = None, failure: str | None = None
) -> dict:
    """Tell the counselor a match ended: why, which side caused it (``by``), and the call failure if any."""
    body = {
        "type": "MATCH_ENDED",
        "matchId": match_id,
        "roomName": room_name,
        "reason": reason,
        "timestamp": epoch_ms(),
    }
    if by:
        body["by"] = by
    if failure:
        body["failure"] = failure
    return body


def match_interrupted(*, match_id: int, side: str, reconnect_until: datetime) -> dict:
    """Tell the counselor one side left the call; it may come back until ``reconnectUntil``."""
    return {
        "type": "MATCH_INTERRUPTED",
        "matchId": match_id,
        "side": side,
        "reconnectUntil": epoch_ms(reconnect_until),
        "timestamp": epoch_ms(),
    }


def match_resumed(*, match_id: int) -> dict:
    """Tell the counselor the side that left is back in the call."""
    return {"type": "MATCH_RESUMED", "matchId": match_id, "timestamp": epoch_ms()}


def counselor_status(*, counselor_id: str, status: str, wrap_up_until: datetime | None = None) -> dict:
    """Tell the dashboard its counselor's status (with the wrap-up's end while in WRAP_UP)."""
    body = {"type": "STATUS", "counselorId": counselor_id, "status": status, "timestamp": epoch_ms()}
    if wrap_up_until is not None:
        body["wrapUpUntil"] = epoch_ms(wrap_up_until)
    return body


def counselor_skills(*, counselor_id: str) -> dict:
    """Tell the dashboard staff changed its counselor's queues or languages (it re-reads its state)."""
    return {"type": "SKILLS", "counselorId": counselor_id, "timestamp": epoch_ms()}


def resync(*, reason: str) -> dict:
    """Return the message that tells a dashboard to re-read its state over REST (messages may have been lost)."""
    return {"type": "RESYNC", "reason": reason, "timestamp": epoch_ms()}
