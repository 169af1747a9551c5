"""Destinations and who may use them (pure: no Django, no I/O).

| destination                        | who may SUBSCRIBE                  |
| ---------------------------------- | ---------------------------------- |
| /topic/queue-rank/{customerId}     | that customer only                 |
| /topic/counselor/{counselorId}     | that counselor only                |
| /topic/test/…, /queue/test/…       | the conformance broker's guest     |
"""

import re
from dataclasses import dataclass

RANK_PREFIX = "/topic/queue-rank/"
COUNSELOR_PREFIX = "/topic/counselor/"
TEST_PREFIXES = ("/topic/test/", "/queue/test/")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Refused(Exception):
    """A destination the principal may not use; the message goes into ERROR."""


@dataclass(frozen=True)
class Principal:
    kind: str  # "customer", "counselor" or "guest"
    ident: str  # customerId, counselorId or "guest"
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
    kind: str  # "rank", "counselor" or "test"
    ident: str


def parse(destination: str) -> Topic:
    """Return the topic a destination names, or raise Refused."""
    for prefix, kind in ((RANK_PREFIX, "rank"), (COUNSELOR_PREFIX, "counselor")):
        if destination.startswith(prefix):
            ident = destination[len(prefix) :]
            if not _ID.fullmatch(ident):
                raise Refused(f"malformed destination {destination!r}")
            return Topic(kind, ident)
    if destination.startswith(TEST_PREFIXES) and len(destination) <= 200:
        return Topic("test", destination)
    raise Refused(f"unknown destination {destination!r}")


def authorize_subscribe(principal: Principal, destination: str) -> Topic:
    """Return the topic if this principal may subscribe to it, else raise Refused."""
    topic = parse(destination)
    if topic.kind == "test":
        if principal.kind != "guest":
            raise Refused("test destinations need the conformance broker")
        return topic
    if destination != principal.own_destination:
        # The original design let anyone who knew an id listen in.
        raise Refused(f"not allowed to subscribe to {destination!r}")
    return topic


def authorize_send(principal: Principal, destination: str) -> Topic:
    """Return the topic if this principal may SEND to it, else raise Refused."""
    topic = parse(destination)
    if topic.kind != "test" or principal.kind != "guest":
        raise Refused(f"SEND to {destination!r} is not allowed")
    return topic
