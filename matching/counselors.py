"""A counselor's shift: the one writer of its status, its lease, its account (STYLE habits 2, 3, 10).

``counselor_status_change`` is the only place that assigns ``Counselor.status``.
"""

import logging
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from common import events, publish
from common.errors import Conflict
from common.logs import event_on_commit
from matching import triggers
from matching.models import Counselor, CounselorEvent
from matching.selectors import wait_stats_forget
from queues import leases

log = logging.getLogger(__name__)

C = Counselor.Status
# What a counselor may choose; BUSY is only ever set by the matcher.
SELF_SERVICE_STATUSES = (C.AVAILABLE, C.AWAY, C.OFFLINE)
# Statuses that need a live heartbeat lease; OFFLINE needs none.
ON_LEASE = (C.AVAILABLE, C.AWAY, C.BUSY)


def counselor_record(*, counselor: Counselor, from_status: str, actor: str, reason: str = "") -> None:
    CounselorEvent.objects.create(
        counselor=counselor, from_status=from_status, to_status=counselor.status, actor=actor, reason=reason
    )


def counselor_status_change(*, counselor: Counselor, status: str, actor: str, reason: str = "") -> bool:
    """Set a counselor's status if it differs; record and publish it. Return whether it changed."""
    was = counselor.status
    if was == status:
        return False
    now = timezone.now()
    changed = Counselor.objects.filter(pk=counselor.pk, status=was).update(status=status, status_changed_at=now)
    if not changed:
        raise Conflict("the counselor's status changed meanwhile; retry", code="status_conflict")
    counselor.status, counselor.status_changed_at = status, now
    counselor_record(counselor=counselor, from_status=was, actor=actor, reason=reason)
    publish.to_counselor(
        counselor.counselor_id, events.counselor_status(counselor_id=counselor.counselor_id, status=status)
    )
    event_on_commit(
        log,
        "counselor status changed",
        event="counselor.status",
        counselor_id=counselor.counselor_id,
        from_status=was,
        status=status,
        actor=actor,
        reason=reason,
    )
    transaction.on_commit(wait_stats_forget)
    if status == C.AVAILABLE:
        # Every freed seat passes through here: a status click, a completed
        # call, a customer no-show or cancel. Ask for a pass once it commits.
        transaction.on_commit(triggers.request_match_pass, robust=True)
    return True


def counselor_lock(*, counselor_id: int) -> Counselor:
    """Lock and return a counselor row (waits: callers hold only its match)."""
    return Counselor.objects.select_for_update(of=("self",)).select_related("user").get(pk=counselor_id)


def _lease_until(expires_ms: int) -> datetime:
    return datetime.fromtimestamp(expires_ms / 1000, tz=UTC)


def _counselor_lease_renew(counselor: Counselor) -> datetime:
    """Renew the cache lease and, since the row is being written anyway, its database copy."""
    expires_at = _lease_until(leases.lease_renew("counselor", counselor.id))
    Counselor.objects.filter(pk=counselor.pk).update(lease_expires_at=expires_at)
    counselor.lease_expires_at = expires_at
    return expires_at


@transaction.atomic(durable=True)
def counselor_set_status(*, counselor: Counselor, status: str) -> Counselor:
    """Let a counselor go AVAILABLE, AWAY or OFFLINE (not while in a match)."""
    if status not in SELF_SERVICE_STATUSES:
        raise Conflict(f"status must be one of {', '.join(SELF_SERVICE_STATUSES)}", code="invalid_status")
    counselor = counselor_lock(counselor_id=counselor.pk)
    if counselor.status == C.BUSY:
        raise Conflict("finish the current match first", code="counselor_busy")
    if status == C.OFFLINE:
        leases.lease_drop("counselor", counselor.id)
        Counselor.objects.filter(pk=counselor.pk).update(lease_expires_at=None)
    else:
        _counselor_lease_renew(counselor)  # on shift from now: the dashboard must heart-beat
    counselor_status_change(counselor=counselor, status=status, actor="counselor")
    return counselor


def counselor_heartbeat(*, counselor: Counselor) -> datetime:
    """Renew an on-shift counselor's lease; return when it now runs out.

    As with customers, only the cache is written; the database copy is the
    sweep's business, so a heartbeat never costs a database write.
    """
    if counselor.status not in ON_LEASE:
        raise Conflict("go AVAILABLE or AWAY first", code="not_on_shift")
    return _lease_until(leases.lease_renew("counselor", counselor.id))


# Not durable: the admin's add view already runs inside a transaction.
@transaction.atomic
def counselor_create(*, username: str, password: str | None, display_name: str = "") -> Counselor:
    """Create a user and its counselor profile in one step."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise Conflict(f"user {username!r} already exists", code="user_exists")
    user = user_model.objects.create_user(username=username, password=password)
    counselor = Counselor.objects.create(user=user, display_name=display_name)
    counselor_record(counselor=counselor, from_status="", actor="admin", reason="created")
    return counselor
