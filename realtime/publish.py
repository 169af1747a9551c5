"""The one bridge from synchronous code to the channel layer (STYLE habit 4).

Services call these helpers inside their transaction; nothing is sent until
the transaction commits, and nothing at all if it rolls back. Only this
module calls ``group_send`` from sync code, so the known trap of
``async_to_sync(group_send)`` in Celery workers ("Event loop is closed")
has one place to be handled: channels-redis keeps one pool per event loop
and closes it with the loop, so each call here is self-contained.
"""

import logging
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from realtime import events

log = logging.getLogger(__name__)


def deliver(group: str, message: dict) -> None:
    """Send one message to a channel-layer group now. Never raises."""
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # A publish that fails must not undo a committed state change; the
        # client re-syncs from its snapshot on reconnect and the poller.
        log.exception("publish to %s failed", group)


def _on_commit(group: str, message: dict) -> None:
    transaction.on_commit(partial(deliver, group, message), robust=True)


def queue_changed(*, version: int) -> None:
    """After commit, tell every node once that the queue order changed."""
    if settings.HEARO_FANOUT == "naive":
        transaction.on_commit(partial(naive_fanout, version), robust=True)
        return
    _on_commit(events.QUEUE_GROUP, {"type": "queue.changed", "version": version})


def naive_fanout(version: int) -> None:
    """The benchmark baseline HearO replaces: one group_send per waiting customer."""
    from queues.selectors import queue_snapshot

    layer = get_channel_layer()

    async def send_all(snapshot) -> None:
        for rank, (registration_id, customer_id) in enumerate(snapshot.waiting, start=1):
            body = events.waiting(
                customer_id=customer_id, registration_id=registration_id, rank=rank, version=version, eta=None
            )
            await layer.group_send(events.customer_group(customer_id), {"type": "customer.event", "body": body})

    async_to_sync(send_all)(queue_snapshot())


def to_customer(customer_id: str, body: dict) -> None:
    """After commit, send a message to every connection of one customer."""
    _on_commit(events.customer_group(customer_id), {"type": "customer.event", "body": body})


def to_counselor(counselor_id: str, body: dict) -> None:
    """After commit, send a message to every connection of one counselor."""
    _on_commit(events.counselor_group(counselor_id), {"type": "counselor.event", "body": body})
