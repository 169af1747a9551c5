"""Writes to the waiting queue (STYLE habits 2, 3, 10).

Every change someone must hear about happens in a durable transaction and
is published on commit through ``common.publish``. ``registration_move`` is
the one writer of a visit's status; every transition goes through it.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from common import events, publish
from common.db import claim, update_in_id_order
from common.errors import Conflict, DomainError
from common.logs import event_on_commit
from queues import leases, signals
from queues.models import DEFAULT_QUEUE, DEFAULT_QUEUE_ID, Customer, Queue, QueueState, Registration, RegistrationEvent
from queues.selectors import (
    queue_open_state,
    queue_waiting_count,
    registration_by_token,
    registration_seq,
    token_hash,
)

log = logging.getLogger(__name__)

S = Registration.Status
# How long the fast heartbeat path may trust a cached token -> registration mapping
# (deleted at once when the visit ends; the TTL only bounds memory).
TOKEN_CACHE_SECONDS = 3600


@dataclass(frozen=True)
class JoinResult:
    registration: Registration
    token: str
    created: bool


def queue_version_bump() -> int:
    """Bump the queue version inside the current transaction and return it.

    The row lock this takes serialises every change to the queue order, so
    versions are handed out in commit order.
    """
    table = QueueState._meta.db_table  # from the model, never from input
    # An upsert, so a database whose row is missing (a flushed test database)
    # still gets exactly one row under concurrent first writers.
    sql = (
        f"INSERT INTO {table} (id, version) VALUES (1, 1) "  # noqa: S608
        f"ON CONFLICT (id) DO UPDATE SET version = {table}.version + 1 RETURNING version"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def queue_changed(*, reason: str, queue_ids: list[str] | None = None, language: str | None = None) -> None:
    """Publish one queue change after commit and let the matcher react.

    ``queue_ids`` names the queues whose order changed (None: any of them), so
    each node's hub re-reads only those; ``language`` names the line of an
    urgent join.
    """
    publish.queue_changed(version=queue_version_bump(), queue_ids=queue_ids, reason=reason, language=language)
    transaction.on_commit(partial(signals.queue_changed.send, sender=Registration, reason=reason), robust=True)


def queue_default() -> Queue:
    """Return the default queue, creating it if it is missing."""
    queue, _ = Queue.objects.get_or_create(queue_id=DEFAULT_QUEUE_ID, defaults=DEFAULT_QUEUE)
    return queue


def queue_for_join(*, queue_id: str | None) -> Queue:
    """Return the queue to join, locked: its cap is counted under this lock."""
    wanted = queue_id or DEFAULT_QUEUE_ID
    if wanted == DEFAULT_QUEUE_ID:
        queue_default()
    # FOR NO KEY UPDATE: joins to one queue still wait for each other (the cap
    # is counted under this lock), but the matcher's overflow into this queue,
    # whose deferred foreign-key check takes FOR KEY SHARE on this row at
    # COMMIT (after it locked the queue version row), is not blocked. A plain
    # FOR UPDATE closed a circle with the version row: a deadlock (the soak).
    queue = Queue.objects.select_for_update(no_key=True).filter(queue_id=wanted).first()
    if queue is None:
        raise DomainError(f"no queue {wanted!r}", code="unknown_queue")
    return queue


def queue_language(*, queue: Queue, language: str | None) -> str:
    if not language:
        return queue.languages[0] if queue.languages else "ko"
    if language not in queue.languages:
        served = ", ".join(queue.languages)
        raise DomainError(f"queue {queue.queue_id!r} serves {served}, not {language!r}", code="unsupported_language")
    return language


def queue_admits(*, queue: Queue, now: datetime) -> None:
    """Refuse a join to a closed or full queue, saying where to turn instead."""
    state = queue_open_state(queue=queue, now=now)
    if not state.open:
        raise Conflict(
            "this line is closed right now",
            code="queue_closed",
            extra={"opensAt": state.opens_at_ms, "alternatives": queue.alternatives},
        )
    if queue.max_waiting is not None and queue_waiting_count(queue=queue) >= queue.max_waiting:
        raise Conflict("this line is full right now", code="queue_full", extra={"alternatives": queue.alternatives})


def registration_record(
    *, registration: Registration, from_status: str, actor: str, reason: str = ""
) -> RegistrationEvent:
    """Write the visit's history row for its change to its current status; return the row (its id is the seq)."""
    return RegistrationEvent.objects.create(
        registration=registration,
        from_status=from_status,
        to_status=registration.status,
        actor=actor,
        reason=reason,
    )


def registration_tell(*, registration: Registration, body: dict, seq: int | None = None) -> None:
    """After commit, send the visit's customer ``body`` stamped with the visit's ``seq``.

    Call it after the change's ``registration_record`` (pass that row's id as
    ``seq`` to skip reading it back): messages about one visit leave from
    different processes and may arrive out of order, and the connection drops
    one whose seq is lower than one it has delivered.
    """
    body["seq"] = seq if seq is not None else registration_seq(registration_id=registration.id)
    publish.to_customer(registration.customer.customer_id, body)


@transaction.atomic(durable=True)
def registration_join(
    *,
    display_name: str = "",
    token: str | None = None,
    queue_id: str | None = None,
    language: str | None = None,
    urgent: bool = False,
    now: datetime | None = None,
) -> JoinResult:
    """Put a customer in a queue's line, or return its visit if it is already in one.

    A token from an earlier, ended visit identifies the returning customer;
    the new visit gets a new token. No ``queue_id``: the default queue; no
    ``language``: the queue's first. A closed or full queue, an unknown
    queue or a language it does not serve refuses the join and creates nothing.
    """
    previous = registration_by_token(token=token) if token else None
    if previous is not None and previous.is_active:
        return JoinResult(registration=previous, token=token or "", created=False)
    now = now or timezone.now()
    queue = queue_for_join(queue_id=queue_id)
    language = queue_language(queue=queue, language=language)
    queue_admits(queue=queue, now=now)
    customer = previous.customer if previous else Customer.objects.create(display_name=display_name)
    if previous and display_name and display_name != customer.display_name:
        customer.display_name = display_name
        customer.save(update_fields=["display_name"])
    raw = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            registration = Registration.objects.create(
                customer=customer,
                queue=queue,
                language=language,
                urgent=urgent,
                enqueued_at=now,
                virtual_arrival=now - timedelta(seconds=queue.urgent_head_start_seconds if urgent else 0),
                queue_since=now,
                token_hash=token_hash(raw),
                lease_expires_at=leases.lease_db_copy(now),
            )
    except IntegrityError:
        # A concurrent join for the same customer committed first; the
        # partial unique index keeps it at one active visit.
        raise Conflict("this customer is already in the queue", code="already_queued") from None
    registration_record(registration=registration, from_status="", actor="customer", reason="joined")
    leases.lease_renew("registration", registration.id)
    cache.set(leases.token_key(registration.token_hash), registration.id, timeout=TOKEN_CACHE_SECONDS)
    if urgent:
        queue_changed(reason="urgent_joined", queue_ids=[queue.queue_id], language=language)
    else:
        queue_changed(reason="joined", queue_ids=[queue.queue_id])
    event_on_commit(
        log,
        "registration joined",
        event="registration.joined",
        registration_id=registration.id,
        customer_id=customer.customer_id,
        returning=previous is not None,
        queue_id=queue.queue_id,
        language=language,
        urgent=urgent,
    )
    return JoinResult(registration=registration, token=raw, created=True)


def registration_heartbeat(*, registration: Registration) -> datetime:
    """Renew the lease of an active visit; return when it now runs out.

    Only the cache is written: the database copy of the lease is the sweep's
    business, so a heartbeat never costs a database write.
    """
    if not registration.is_active:
        raise Conflict(f"registration is {registration.status}", code="not_active")
    expires = leases.lease_renew("registration", registration.id)
    token = leases.token_key(registration.token_hash)
    cache.set(token, registration.id, timeout=TOKEN_CACHE_SECONDS)
    # A leave that committed after our read deleted the mapping before this set
    # put it back, and the fast path would take the revoked token for a live one
    # for an hour. Look again after the set: a leave committing later deletes it.
    status = Registration.objects.filter(pk=registration.pk).values_list("status", flat=True).first()
    if status not in Registration.ACTIVE:
        cache.delete(token)
        leases.lease_drop("registration", registration.id)
        raise Conflict(f"registration is {status}", code="not_active")
    return datetime.fromtimestamp(expires / 1000, tz=UTC)


def registration_move(
    *,
    registration: Registration,
    to: str,
    expected: tuple[str, ...],
    actor: str,
    reason: str,
    tell: dict | None = None,
    verb: str = "",
    **fields,
) -> RegistrationEvent | None:
    """Move a visit from one of ``expected`` to ``to``; return its history row, None if another writer moved it first.

    The one writer of ``Registration.status``. The conditional UPDATE is the
    claim: of two concurrent writers (a cancel and a sweep, a timeout and a
    join) exactly one changes the row; the loser changes nothing. The winner
    records the history row, tells the customer ``tell`` after commit (stamped
    with the new seq) and logs ``registration.{verb}`` (default: the new status).
    """
    was = registration.status
    if not Registration.objects.filter(pk=registration.pk, status__in=expected).update(status=to, **fields):
        return None
    registration.status = to
    for name, value in fields.items():
        setattr(registration, name, value)
    recorded = registration_record(registration=registration, from_status=was, actor=actor, reason=reason)
    if tell is not None:
        registration_tell(registration=registration, body=tell, seq=recorded.id)
    verb = verb or to.lower()
    event_on_commit(
        log,
        f"registration {verb}",
        event=f"registration.{verb}",
        registration_id=registration.id,
        customer_id=registration.customer.customer_id,
        from_status=was,
        reason=reason,
        actor=actor,
    )
    return recorded


def registration_leave(
    *, registration: Registration, status: str, actor: str, reason: str, announce: bool = True
) -> bool:
    """Move an active registration to a terminal status; False if it already left.

    With ``announce=False`` the caller publishes one queue change for a batch.
    """
    was = registration.status
    customer_id = registration.customer.customer_id
    body = events.terminal(
        customer_id=customer_id,
        registration_id=registration.id,
        queue_id=registration.queue_id,
        status=status,
        reason=reason,
    )
    recorded = registration_move(
        registration=registration,
        to=status,
        expected=(was,),
        actor=actor,
        reason=reason,
        ended_at=timezone.now(),
        left_reason=reason,
    )
    if recorded is None:
        return False
    # After commit, in this order: the broadcast first (everyone behind waits
    # on it; the one leaving has the answer to its own request), then the
    # leaver's message, then, in one command, the lease and token (a rollback
    # must leave the visit its lease; the fast heartbeat path must see it end).
    if was == S.WAITING and announce:
        queue_changed(reason=reason, queue_ids=[registration.queue_id])
    registration_tell(registration=registration, body=body, seq=recorded.id)
    ended = [leases.lease_key("registration", registration.id), leases.token_key(registration.token_hash)]
    transaction.on_commit(lambda: cache.delete_many(ended))
    return True


def registration_requeue(*, registration: Registration, actor: str, reason: str) -> bool:
    """Put a matched customer back in the queue with its original enqueued_at (rank order kept).

    The caller tells the customer its rank once the pass's queue change is counted.
    """
    recorded = registration_move(
        registration=registration,
        to=S.WAITING,
        expected=(S.MATCHED, S.IN_CALL),
        actor=actor,
        reason=reason,
        verb="requeued",
        matched_at=None,
        in_call_at=None,
    )
    return recorded is not None


def registration_overflow(*, registration: Registration, to: Queue, now: datetime) -> bool:
    """Move a WAITING visit to another queue, keeping its virtual arrival and language; False if it cannot.

    False when the visit left meanwhile, or when the other queue does not
    serve its language (the customer could talk to nobody there). Not a
    change of status: the history row (WAITING -> WAITING, ``overflow``) gives
    the visit a new seq; the caller publishes the queue change and tells the
    customer its new rank.
    """
    was, language = registration.queue_id, registration.language
    if language not in to.languages:
        return False
    moved = Registration.objects.filter(pk=registration.pk, status=S.WAITING, queue_id=was).update(
        queue=to, queue_since=now
    )
    if not moved:
        return False  # matched or gone under us (only possible without row locks)
    registration.queue, registration.queue_since = to, now
    registration_record(registration=registration, from_status=S.WAITING, actor="matcher", reason="overflow")
    event_on_commit(
        log,
        "registration overflowed",
        event="registration.overflowed",
        registration_id=registration.id,
        customer_id=registration.customer.customer_id,
        from_queue=was,
        queue_id=to.queue_id,
        language=language,
    )
    return True


@transaction.atomic(durable=True)
def registration_cancel(*, registration: Registration) -> str:
    """Take a WAITING customer out of the queue; idempotent. Return the status now.

    ``registration`` as the caller last read it: the conditional UPDATE has the
    last word, so a fresh read costs a round trip only when it did not move.
    """
    if registration.status == S.WAITING and _leave_cancelled(registration):
        return S.CANCELLED
    # Not WAITING as read (a retry after a lost response, a stale read), or moved since: look again, once.
    registration.refresh_from_db(fields=["status", "ended_at", "left_reason"])
    if registration.status == S.WAITING and not _leave_cancelled(registration):
        registration.refresh_from_db(fields=["status"])  # another writer moved it between the read and the update
    if registration.status != S.CANCELLED:  # a cancel that went through set it
        raise Conflict(f"registration is {registration.status}", code="not_cancellable")
    return S.CANCELLED


def _leave_cancelled(registration: Registration) -> bool:
    return registration_leave(registration=registration, status=S.CANCELLED, actor="customer", reason="cancelled")


@transaction.atomic(durable=True)
def registration_expire_ghosts(*, now: datetime | None = None) -> list[Registration]:
    """Expire WAITING registrations whose lease ran out; return them.

    Candidates come from the indexed database copy of the lease; the cache
    has the last word, and a live cache lease refreshes the stale copy (to the
    lease's own expiry, so the holder is found once it runs out). If the
    cache lost every lease (Redis restarted empty), nobody is expired on this
    pass: every copy is refreshed instead, and clients re-lease on their next
    beat, well within one lease. A replica promoted by Sentinel counts as
    such a loss: it may lack the last renewals (``leases.leases_intact``).
    """
    now = now or timezone.now()
    candidates = Registration.objects.select_related("customer").filter(status=S.WAITING, lease_expires_at__lt=now)
    if not leases.leases_intact():
        waiting = Registration.objects.filter(status=S.WAITING)
        renewed = update_in_id_order(waiting, lease_expires_at=leases.lease_db_copy(now))
        leases.leases_mark_intact()
        # A fresh start has an empty cache too; it is only news if someone was waiting.
        if renewed:
            log.warning(
                "lease cache is on a Redis that restarted or took over; nobody expired, %d waiting leases renewed",
                renewed,
            )
        return []
    # Claimed before a lease is read: two sweeps at once (two workers) may read
    # a lease either side of a heartbeat, and rows each locked as it reached them
    # (a renewal here, an expiry there) closed a circle: the soak's deadlock.
    # The rows another writer holds are its to decide (a concurrent sweep, a cancel).
    candidates = list(claim(candidates.order_by("id")))
    alive = leases.lease_expiries("registration", [r.id for r in candidates])
    leases.lease_copies_refresh(Registration, alive)
    expired = []
    for registration in candidates:
        if registration.id in alive:
            continue
        if registration_leave(
            registration=registration, status=S.EXPIRED, actor="matcher", reason="lease_expired", announce=False
        ):
            expired.append(registration)
    if expired:
        # Once per sweep, however many left.
        queue_changed(reason="expired", queue_ids=sorted({r.queue_id for r in expired}))
    return expired
