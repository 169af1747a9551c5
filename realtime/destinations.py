"""Destinations and who may use them (pure: no Django, no I/O).

| destination                        | who may SUBSCRIBE                  |
| ---------------------------------- | ---------------------------------- |
| /topic/queue-rank/{customerId}     | that customer only                 |
| /topic/counselor/{counselorId}     | that counselor only                |

Nobody may SEND: every destination carries the server's pushes. Every other
``/topic/{name}`` and ``/queue/{name}`` belongs to the STOMP conformance
broker (``realtime.conformance``, a test mode); here they are only
recognised, to be refused.
"""

import re
from dataclasses import dataclass
from typing import NoReturn

RANK_PREFIX = "/topic/queue-rank/"
COUNSELOR_PREFIX = "/topic/counselor/"
TOPIC_PREFIX, QUEUE_PREFIX = "/topic/", "/queue/"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Refused(Exception):
    """A destination the principal may not use; the message goes into ERROR."""


@dataclass(frozen=True)
class Principal:
    kind: str  # "customer" or "counselor" (the conformance broker adds its own)
    ident: str  # customerId or counselorId
    registration_id: int | None = None

    @property
    def own_destination(self) -> str | None:
        if self.kind == "customer":
            return RANK_PREFIX + self.ident
        if self.kind == "counselor":
            return COUNSELOR_PREFIX + self.ident
        return None


@dataclass(frozen=True)
class Topic:
    kind: str  # "rank" or "counselor" (the conformance broker adds its own)
    ident: str


def is_test_destination(destination: str) -> bool:
    """Return whether the destination is one the conformance broker serves.

    Any ``/topic/{name}`` or ``/queue/{name}`` (suites hard-code names such
    as ``/topic/chat.general``), except the product's own topics.
    """
    if destination.startswith((RANK_PREFIX, COUNSELOR_PREFIX)) or len(destination) > 200:
        return False
    prefix = next((p for p in (TOPIC_PREFIX, QUEUE_PREFIX) if destination.startswith(p)), None)
    return prefix is not None and len(destination) > len(prefix)


def is_queue_destination(destination: str) -> bool:
    """Return whether the conformance broker serves it as a queue of competing consumers."""
    return destination.startswith(QUEUE_PREFIX) and is_test_destination(destination)


def parse(destination: str) -> Topic:
    """Return the topic a destination names, or raise Refused."""
    for prefix, kind in ((RANK_PREFIX, "rank"), (COUNSELOR_PREFIX, "counselor")):
        if destination.startswith(prefix):
            ident = destination[len(prefix) :]
            if not _ID.fullmatch(ident):
                raise Refused(f"malformed destination {destination!r}")
            return Topic(kind, ident)
    if is_test_destination(destination):
        raise Refused("test destinations need the conformance broker")
    raise Refused(f"unknown destination {destination!r}")


def authorize_subscribe(principal: Principal, destination: str) -> Topic:
    """Return the topic if this principal may subscribe to it, else raise Refused."""
    topic = parse(destination)
    if destination != principal.own_destination:
        # The original design let anyone who knew an id listen in.
        raise Refused(f"not allowed to subscribe to {destination!r}")
    return topic


def refuse_send(destination: str) -> NoReturn:
    """Raise Refused: no destination takes a SEND, and the detail says why."""
    if not is_test_destination(destination):
        parse(destination)  # a malformed or unknown destination is named as such
    raise Refused(f"SEND to {destination!r} is not allowed")
