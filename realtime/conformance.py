"""The STOMP conformance broker: a plain broker for third-party clients' test suites.

A test mode, never production: with ``HEARO_STOMP_TEST_BROKER=1``
``realtime.routing`` serves every STOMP socket (``/ws/stomp``, SockJS) with
the classes here. On top of what HearO serves, a client may log in as
guest/guest, subscribe to ``/topic/test/…`` and ``/queue/test/…``, and SEND
there: each SEND is relayed through a channel-layer group to every
subscriber, on any node, its body and custom headers unchanged. Customers and
counselors are served as in production; nobody else may SEND.
"""

import hashlib

from common.errors import Unauthorized
from realtime.auth import Credentials
from realtime.consumers import StompConsumer
from realtime.destinations import Principal, Topic, is_test_destination
from realtime.session import SendRequested
from realtime.stomp_connection import StompConnection

GUEST = Principal("guest", "guest")
TEST = "test"  # the Topic kind of a test destination; its ident is the whole destination
RELAYED = "test.message"  # the channel-layer type of a relayed SEND

# Headers the broker sets itself on a relayed message.
_RESERVED = {
    "destination",
    "receipt",
    "content-length",
    "content-type",
    "transaction",
    "message-id",
    "subscription",
    "ack",
}


def test_group(destination: str) -> str:
    """Return the channel-layer group name of a test destination."""
    return "test." + hashlib.sha1(destination.encode(), usedforsecurity=False).hexdigest()


def relayed(event: SendRequested) -> dict:
    """Return the channel-layer message that carries a SEND to its destination's subscribers."""
    frame = event.frame
    return {
        "type": RELAYED,
        "destination": event.destination,
        "content_type": frame.get("content-type"),
        "headers": [[k, v] for k, v in frame.headers if k not in _RESERVED],
        "body": frame.body,
    }


class ConformanceStompConnection(StompConnection):
    """A StompConnection that also lets the guest SUBSCRIBE and SEND to the test destinations."""

    # -- auth and topics ------------------------------------------------------

    def principal_for(self, credentials: Credentials) -> Principal:
        if credentials.login is None:
            return super().principal_for(credentials)  # a customer or a counselor
        if (credentials.login, credentials.passcode) != ("guest", "guest"):
            raise Unauthorized("bad login")
        return GUEST

    def relays(self, destination: str) -> bool:
        """Return whether this connection may use the destination as a plain broker's."""
        return self.principal == GUEST and is_test_destination(destination)

    def authorize_subscribe(self, destination: str) -> Topic:
        if self.relays(destination):
            return Topic(TEST, destination)
        return super().authorize_subscribe(destination)

    def group_of(self, topic: Topic) -> str:
        return test_group(topic.ident) if topic.kind == TEST else super().group_of(topic)

    async def attach(self, topic: Topic) -> None:
        if topic.kind != TEST:
            await super().attach(topic)
            return
        # No snapshot and no hub: a test topic carries only what clients SEND.
        await self._group_add(self.group_of(topic))

    # -- client commands ------------------------------------------------------

    async def on_send(self, event: SendRequested) -> None:
        if not self.relays(event.destination):
            await super().on_send(event)  # refused, as in production
            return
        await self.layer.group_send(test_group(event.destination), relayed(event))
        await self.send(self.session.receipt_for(event.frame))

    # -- channel-layer events -------------------------------------------------

    async def layer_message(self, message: dict) -> None:
        if message["type"] != RELAYED:
            await super().layer_message(message)
            return
        topic, headers = Topic(TEST, message["destination"]), dict(message["headers"])
        for sub_id, sub_topic in list(self.sub_topics.items()):
            if sub_topic == topic and not self.session.closed:
                data = self.session.message(
                    sub_id, message["body"], content_type=message["content_type"], headers=headers
                )
                await self.send(data)


class ConformanceStompConsumer(StompConsumer):
    """``/ws/stomp`` and ``/ws/sockjs/websocket`` in the test mode: relayed SENDs arrive too."""

    connection_class = ConformanceStompConnection

    async def test_message(self, message):
        await self.connection.layer_message(message)
