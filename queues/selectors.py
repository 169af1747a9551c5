"""Reads of the waiting queue (STYLE habit 2). No writes here."""

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.db.models import Avg, F, Q, Subquery

from hearo.errors import Unauthorized
from queues.models import QueueState, Registration, RegistrationEvent
from queues.ranking import estimate_wait_seconds
from realtime import events

# Calls that feed the wait estimate: the last few completed ones of the last day.
RECENT_CALLS = 20
MIN_RECENT_CALLS = 3
STATS_TTL_SECONDS = 5.0

W = Registration.Status.WAITING


def token_hash(token: str) -> str:
    """Return the stored form of a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def registration_by_token(*, token: str | None) -> Registration:
    """Return the registration a bearer token belongs to, or raise Unauthorized."""
    if not token:
        raise Unauthorized("missing bearer token")
    try:
        return Registration.objects.select_related("customer").get(token_hash=token_hash(token))
    except Registration.DoesNotExist:
        raise Unauthorized("unknown or revoked token") from None


def registration_rank(*, registration: Registration) -> int | None:
    """Return the 1-based rank of a WAITING registration (None otherwise)."""
    if registration.status != W:
        return None
    ahead = Registration.objects.filter(status=W).filter(
        Q(enqueued_at__lt=registration.enqueued_at) | Q(enqueued_at=registration.enqueued_at, id__lt=registration.id)
    )
    return 1 + ahead.count()


def queue_version() -> int:
    """Return the current queue version (0 before the first change)."""
    return QueueState.objects.filter(pk=1).values_list("version", flat=True).first() or 0


@dataclass(frozen=True)
class QueueSnapshot:
    version: int
    # (registration id, customer id) in rank order
    waiting: list[tuple[int, str]]
    head_enqueued_at: datetime | None = None


def queue_snapshot() -> QueueSnapshot:
    """Return the waiting registrations in rank order, with the queue version, in one query.

    The version rides along as a scalar subquery, so on PostgreSQL it comes
    from the same statement snapshot as the list. (Only an empty queue needs
    a second query for it, and an empty queue has no ranks to get wrong.)
    """
    version = QueueState.objects.filter(pk=1).values("version")[:1]
    rows = list(
        Registration.objects.filter(status=W)
        .order_by("enqueued_at", "id")
        .annotate(queue_version=Subquery(version))
        .values_list("id", "customer__customer_id", "enqueued_at", "queue_version")
    )
    if not rows:
        return QueueSnapshot(version=queue_version(), waiting=[])
    return QueueSnapshot(version=rows[0][3] or 0, waiting=[(r[0], r[1]) for r in rows], head_enqueued_at=rows[0][2])


@dataclass(frozen=True)
class QueueOrder:
    version: int
    ids: list[int]  # waiting registration ids in rank order
    head_enqueued_at: datetime | None = None


def queue_order() -> QueueOrder:
    """Return the waiting registration ids in rank order, the version and the head's enqueue time.

    The rank hub's read on every queue change, so it fetches as little as it
    can: one int per row (an index-only scan of ``registration_queue_order``)
    with the version as a scalar subquery from the same statement snapshot.
    The head's time, only shown as the longest wait, is a second indexed read.
    """
    version = QueueState.objects.filter(pk=1).values("version")[:1]
    waiting = Registration.objects.filter(status=W).order_by("enqueued_at", "id")
    rows = list(waiting.annotate(queue_version=Subquery(version)).values_list("id", "queue_version"))
    if not rows:
        return QueueOrder(version=queue_version(), ids=[])
    head = waiting.values_list("enqueued_at", flat=True).first()
    return QueueOrder(version=rows[0][1] or 0, ids=[r[0] for r in rows], head_enqueued_at=head)


_stats_cache: dict[str, tuple[float, tuple[int, float | None]]] = {}


def wait_stats() -> tuple[int, float | None]:
    """Return (counselors on shift, average recent call seconds or None), cached briefly.

    Counselors and matches belong to the matching app, which depends on this
    one; they are looked up through the app registry so the queue app never
    imports matching.
    """
    hit = _stats_cache.get("stats")
    if hit and hit[0] > time.monotonic():
        return hit[1]
    counselor = apps.get_model("matching", "Counselor")
    match = apps.get_model("matching", "Match")
    on_shift = counselor.objects.filter(status__in=["AVAILABLE", "BUSY"], user__is_active=True).count()
    recent = (
        match.objects.filter(end_reason="completed", counselor_joined_at__isnull=False)
        .order_by("-ended_at")
        .values_list("id", flat=True)[:RECENT_CALLS]
    )
    calls = match.objects.filter(id__in=list(recent))
    average = None
    if len(recent) >= MIN_RECENT_CALLS:
        duration = calls.aggregate(avg=Avg(F("ended_at") - F("counselor_joined_at")))["avg"]
        average = duration.total_seconds() if duration is not None else None
    stats = (on_shift, average)
    _stats_cache["stats"] = (time.monotonic() + STATS_TTL_SECONDS, stats)
    return stats


def wait_stats_forget() -> None:
    """Drop the cached stats (a counselor's shift changed)."""
    _stats_cache.clear()


def estimate_for_rank(rank: int) -> int | None:
    on_shift, average = wait_stats()
    return estimate_wait_seconds(rank=rank, counselors_on_shift=on_shift, average_call_seconds=average)


def registration_seq(*, registration_id: int) -> int:
    """Return the visit's change counter: the id of its newest history row.

    Two changes to one visit are serialised by its row lock, so the later
    one's history row always gets the higher id: the counter only goes up,
    whichever process made the change and whenever its message arrives.
    """
    newest = RegistrationEvent.objects.filter(registration_id=registration_id).order_by("-id").values("id")[:1]
    return next(iter(newest), {"id": 0})["id"]


def registration_state(*, registration: Registration) -> dict:
    """Return what the push channel would carry for this registration now, with its ``seq``."""
    state = _registration_state(registration=registration)
    state["seq"] = registration_seq(registration_id=registration.id)
    return state


def _registration_state(*, registration: Registration) -> dict:
    customer_id = registration.customer.customer_id
    if registration.status == W:
        version = queue_version()
        rank = registration_rank(registration=registration)
        return events.waiting(
            customer_id=customer_id,
            registration_id=registration.id,
            rank=rank,
            version=version,
            eta=estimate_for_rank(rank),
        )
    if registration.status in (Registration.Status.MATCHED, Registration.Status.IN_CALL):
        match = registration.matches.filter(ended_at__isnull=True).first()
        if match is not None:
            build = events.matched if registration.status == Registration.Status.MATCHED else events.in_call
            return build(
                customer_id=customer_id,
                registration_id=registration.id,
                identity=registration.customer.identity,
                room_name=match.room_name,
                match_id=match.id,
            )
    return events.terminal(
        customer_id=customer_id,
        registration_id=registration.id,
        status=registration.status,
        reason=registration.left_reason,
    )


def registration_by_id_state(registration_id: int) -> dict:
    """Return the current push-channel state of a registration by id."""
    registration = Registration.objects.select_related("customer").get(pk=registration_id)
    return registration_state(registration=registration)
