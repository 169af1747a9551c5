"""The one bridge from synchronous code to the channel layer (STYLE habit 4).

Services call these helpers inside their transaction; nothing is sent until
the transaction commits, and nothing at all if it rolls back. Queue changes
go out as one Redis PUBLISH that every node's rank hub subscribes to (with
Redis configured); everything else is a channel-layer group message. Only this
module calls ``group_send`` (or PUBLISH) from sync code, so the known trap of
``async_to_sync(group_send)`` in Celery workers ("Event loop is closed")
has one place to be handled: channels-redis keeps one pool per event loop
and closes it with the loop, so each call here is self-contained.
"""

import json
import logging
import time
from collections.abc import Callable
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import events, redis_clients

log = logging.getLogger(__name__)


_redis_client = None


def _redis():
    """Return the process's synchronous Redis client (redis-py pools are fork-safe)."""
    global _redis_client
    if _redis_client is None:
        _redis_client = redis_clients.sync_client(socket_timeout=2, socket_connect_timeout=2)
    return _redis_client


def deliver(group: str, message: dict) -> None:
    """Send one message to a channel-layer group now. Never raises.

    Redis unreachable (a failover in progress, a restart) is retried for up to
    HEARO_PUBLISH_RETRY_SECONDS: the change is committed, and a message dropped
    in the gap would reach only the customers whose node happened to re-sync
    after it.
    """
    deadline = time.monotonic() + settings.HEARO_PUBLISH_RETRY_SECONDS
    pause = 0.1
    while True:
        try:
            _send(group, message)
            return
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if time.monotonic() + pause > deadline:
                log.error("publish to %s failed; Redis unreachable: %s", group, exc)
                return
            time.sleep(pause)
            pause = min(2 * pause, 1.0)
        except Exception:
            # A publish that fails must not undo a committed state change; the
            # client re-syncs from its snapshot on reconnect and the poller.
            log.exception("publish to %s failed", group)
            return


def _send(group: str, message: dict) -> None:
    if group == events.QUEUE_GROUP and settings.HEARO_QUEUE_BROADCAST:
        # One PUBLISH reaches every node's hub: no per-receiver channel,
        # no expiry bookkeeping, whatever the number of nodes or customers.
        _redis().publish(settings.HEARO_QUEUE_BROADCAST, json.dumps(message))
    else:
        async_to_sync(get_channel_layer().group_send)(group, message)


def _on_commit(group: str, message: dict) -> None:
    transaction.on_commit(partial(deliver, group, message), robust=True)


def queue_broadcast(
    version: int, queue_ids: list[str] | None = None, reason: str = "", language: str | None = None
) -> None:
    """Tell every node's rank hub, now, that these queues' order changed (one message).

    ``queue_ids`` None means any queue may have changed: the hubs re-read all.
    """
    body = events.queue_changed(version=version, queue_ids=queue_ids, reason=reason, language=language)
    deliver(events.QUEUE_GROUP, body)


# How a committed queue change goes out: the broadcast, unless a benchmark
# baseline replaced it at start-up (``realtime.naive_fanout``, HEARO_FANOUT=naive).
_queue_publisher: Callable[..., None] = queue_broadcast


def queue_publisher_set(publisher: Callable[..., None]) -> None:
    """Replace how queue changes are published (called once, from an AppConfig.ready)."""
    global _queue_publisher
    _queue_publisher = publisher


def queue_changed(
    *, version: int, queue_ids: list[str] | None = None, reason: str = "", language: str | None = None
) -> None:
    """After commit, tell every node once that these queues' order changed."""
    transaction.on_commit(partial(_queue_publisher, version, queue_ids, reason, language), robust=True)


def to_customer(customer_id: str, body: dict) -> None:
    """After commit, send a message to every connection of one customer."""
    _on_commit(events.customer_group(customer_id), {"type": "customer.event", "body": body})


def to_counselor(counselor_id: str, body: dict) -> None:
    """After commit, send a message to every connection of one counselor."""
    _on_commit(events.counselor_group(counselor_id), {"type": "counselor.event", "body": body})
