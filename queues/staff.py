"""Staff writes to the queues' configuration (STYLE habits 2, 3).

The body is validated by ``queues.config`` (pure, shared with the Django
admin); here are the checks that need other rows: the overflow target
exists and no chain of overflows comes back to where it started. A change
that moves who may join or where the waiting go publishes one queue change,
so every node's hub re-reads that queue and each customer gets a fresh estimate.
"""

import logging

from django.db import IntegrityError, transaction

from common.errors import Conflict, DomainError, NotFound
from common.logs import event_on_commit
from queues.config import ConfigError, queue_config_check, queue_config_clean
from queues.models import DEFAULT_QUEUE_ID, Queue, Registration
from queues.services import queue_changed

log = logging.getLogger(__name__)

# The model's fields as the config module names them, for reading a queue's values back.
VALUE_FIELDS = (
    "queue_id",
    "name_ko",
    "name_en",
    "languages",
    "timezone",
    "hours",
    "closed_dates",
    "max_waiting",
    "overflow_queue_id",
    "overflow_after_seconds",
    "urgent_head_start_seconds",
    "wrap_up_seconds",
    "alternatives",
)


def _values(queue: Queue) -> dict:
    return {name: getattr(queue, name) for name in VALUE_FIELDS}


def queue_overflow_check(*, values: dict) -> None:
    """Refuse an overflow target that does not exist or that overflows back into this queue."""
    queue_config_check(values)
    target = values.get("overflow_queue_id")
    if target is None:
        return
    seen = {values["queue_id"]}
    rules = dict(Queue.objects.exclude(pk=values["queue_id"]).values_list("queue_id", "overflow_queue_id"))
    if target not in rules:
        raise DomainError(
            f"overflowQueueId: no queue {target!r}", code="unknown_queue", extra={"field": "overflowQueueId"}
        )
    while target is not None:
        if target in seen:
            raise ConfigError("overflowQueueId", f"overflowing into {values['overflow_queue_id']!r} comes back here")
        seen.add(target)
        target = rules.get(target)


@transaction.atomic(durable=True)
def queue_create(*, body: object, actor: str) -> Queue:
    """Create a queue from the staff body; 409 ``queue_exists`` if its id is taken."""
    fields = queue_config_clean(body, partial=False)
    queue = Queue(**fields)
    queue_overflow_check(values=_values(queue))
    if Queue.objects.filter(pk=queue.queue_id).exists():
        raise Conflict(f"queue {queue.queue_id!r} already exists", code="queue_exists")
    try:
        with transaction.atomic():
            queue.save(force_insert=True)
    except IntegrityError:
        raise Conflict(f"queue {queue.queue_id!r} already exists", code="queue_exists") from None
    queue_changed(reason="queue_configured", queue_ids=[queue.queue_id])
    event_on_commit(log, "queue created", event="queue.created", queue_id=queue.queue_id, actor=actor)
    return queue


@transaction.atomic(durable=True)
def queue_update(*, queue_id: str, body: object, actor: str) -> Queue:
    """Change the settings given in ``body`` (a PATCH); the queueId itself cannot change."""
    fields = queue_config_clean(body, partial=True)
    if fields.get("queue_id", queue_id) != queue_id:
        raise ConfigError("queueId", "a queue's id cannot change; create a new queue instead")
    queue = Queue.objects.select_for_update().filter(pk=queue_id).first()
    if queue is None:
        raise NotFound(f"no queue {queue_id!r}")
    for name, value in fields.items():
        setattr(queue, name, value)
    queue_overflow_check(values=_values(queue))
    queue.save()
    queue_changed(reason="queue_configured", queue_ids=[queue_id])
    event_on_commit(
        log, "queue configured", event="queue.configured", queue_id=queue_id, actor=actor, fields=sorted(fields)
    )
    return queue


@transaction.atomic(durable=True)
def queue_delete(*, queue_id: str, actor: str) -> None:
    """Delete a queue nobody has used; one with history is closed instead (``hours: []``)."""
    queue = Queue.objects.select_for_update().filter(pk=queue_id).first()
    if queue is None:
        raise NotFound(f"no queue {queue_id!r}")
    if queue_id == DEFAULT_QUEUE_ID:
        raise Conflict("the default queue takes every join without a queueId", code="default_queue")
    feeders = sorted(Queue.objects.filter(overflow_queue=queue).values_list("queue_id", flat=True))
    if feeders:
        raise Conflict(f"{', '.join(feeders)} overflow into this queue", code="queue_in_use")
    visits = Registration.objects.filter(queue=queue)
    if visits.filter(status__in=Registration.ACTIVE).exists():
        raise Conflict("customers are waiting or in a call in this queue", code="queue_in_use")
    if visits.exists():
        # The visits' history names the queue: keep it, and stop new joins instead.
        raise Conflict("this queue has past visits; close it with hours: [] instead", code="queue_has_history")
    queue.delete()
    event_on_commit(log, "queue deleted", event="queue.deleted", queue_id=queue_id, actor=actor)
