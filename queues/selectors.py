"""Reads of the waiting queue (STYLE habit 2). No writes here."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, Subquery

from common.errors import Unauthorized
from queues.models import QueueState, Registration, RegistrationEvent

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


def registration_seq(*, registration_id: int) -> int:
    """Return the visit's change counter: the id of its newest history row.

    Two changes to one visit are serialised by its row lock, so the later
    one's history row always gets the higher id: the counter only goes up,
    whichever process made the change and whenever its message arrives.
    """
    newest = RegistrationEvent.objects.filter(registration_id=registration_id).order_by("-id").values("id")[:1]
    return next(iter(newest), {"id": 0})["id"]
