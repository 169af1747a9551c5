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
    return queue_store(fields=queue_config_clean(body, partial=False), actor=actor, create=True)


@transaction.atomic(durable=True)
def queue_update(*, queue_id: str, body: object, actor: str) -> Queue:
    """Change the settings given in ``body`` (a PATCH); the queueId itself cannot change."""
    fields = queue_config_clean(body, partial=True)
    if fields.get("queue_id", queue_id) != queue_id:
        raise ConfigError("queueId", "a queue's id cannot change; create a new queue instead")
    return queue_store(fields={**fields, "queue_id": queue_id}, actor=actor, create=False)


# Not durable: the Django admin's views already run inside a transaction. The
# REST API reaches it through the durable queue_create / queue_update.
@transaction.atomic
def queue_store(*, fields: dict, actor: str, create: bool) -> Queue:
    """Create a queue, or change the given settings of one, from cleaned fields; publish the change.

    ``fields`` comes from ``queue_config_clean`` and carries ``queue_id``.
    Customers already waiting keep their registration and their place: only
    the queue's row changes, and the hub re-reads the queue's order.
    """
    queue_id = fields["queue_id"]
    if create:
        queue = Queue(**fields)
    else:
        # No key update: an overflow's deferred FK check into this queue must not
        # wait on us while we wait for the version row it holds (see queue_for_join).
        queue = Queue.objects.select_for_update(no_key=True).filter(pk=queue_id).first()
        if queue is None:
            raise NotFound(f"no queue {queue_id!r}")
        for name, value in fields.items():
            setattr(queue, name, value)
    queue_overflow_check(values=_values(queue))
    if create:
        _queue_insert(queue)
    else:
        queue.save()
    queue_changed(reason="queue_configured", queue_ids=[queue_id])
    what = ("queue created", "queue.created") if create else ("queue configured", "queue.configured")
    event_on_commit(log, what[0], event=what[1], queue_id=queue_id, actor=actor, fields=sorted(fields))
    return queue


def _queue_insert(queue: Queue) -> None:
    if Queue.objects.filter(pk=queue.queue_id).exists():
        raise Conflict(f"queue {queue.queue_id!r} already exists", code="queue_exists")
    try:
        with transaction.atomic():
            queue.save(force_insert=True)
    except IntegrityError:  # a concurrent create took the id between the check and the insert
        raise Conflict(f"queue {queue.queue_id!r} already exists", code="queue_exists") from None


def queue_delete_refusal(*, queue: Queue) -> DomainError | None:
    """Return why a queue cannot be deleted, or None (the REST API and the admin ask the same)."""
    if queue.queue_id == DEFAULT_QUEUE_ID:
        return Conflict("the default queue takes every join without a queueId", code="default_queue")
    feeders = sorted(Queue.objects.filter(overflow_queue=queue).values_list("queue_id", flat=True))
    if feeders:
        return Conflict(f"{', '.join(feeders)} overflow into this queue", code="queue_in_use")
    visits = Registration.objects.filter(queue=queue)
    if visits.filter(status__in=Registration.ACTIVE).exists():
        return Conflict("customers are waiting or in a call in this queue", code="queue_in_use")
    if visits.exists():
        # The visits' history names the queue: keep it, and stop new joins instead.
        return Conflict("this queue has past visits; close it with hours: [] instead", code="queue_has_history")
    return None


@transaction.atomic(durable=True)
def queue_delete(*, queue_id: str, actor: str) -> None:
    """Delete a queue nobody has used; one with history is closed instead (``hours: []``)."""
    queue_remove(queue_id=queue_id, actor=actor)


# Not durable, for the Django admin (see queue_store).
@transaction.atomic
def queue_remove(*, queue_id: str, actor: str) -> None:
    queue = Queue.objects.select_for_update().filter(pk=queue_id).first()
    if queue is None:
        raise NotFound(f"no queue {queue_id!r}")
    refusal = queue_delete_refusal(queue=queue)
    if refusal is not None:
        raise refusal
    queue.delete()
    event_on_commit(log, "queue deleted", event="queue.deleted", queue_id=queue_id, actor=actor)
