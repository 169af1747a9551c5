"""Writes to counselors and matches (STYLE habits 2, 3, 10)."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from hearo.errors import Conflict
from matching.models import Counselor, CounselorEvent
from queues import leases
from queues.selectors import wait_stats_forget
from realtime import events, publish

C = Counselor.Status
# What a counselor may choose; BUSY is only ever set by the matcher.
SELF_SERVICE_STATUSES = (C.AVAILABLE, C.AWAY, C.OFFLINE)


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
    transaction.on_commit(wait_stats_forget)
    return True


@transaction.atomic(durable=True)
def counselor_set_status(*, counselor: Counselor, status: str) -> Counselor:
    """Let a counselor go AVAILABLE, AWAY or OFFLINE (not while in a match)."""
    if status not in SELF_SERVICE_STATUSES:
        raise Conflict(f"status must be one of {', '.join(SELF_SERVICE_STATUSES)}", code="invalid_status")
    counselor = Counselor.objects.select_for_update().get(pk=counselor.pk)
    if counselor.status == C.BUSY:
        raise Conflict("finish the current match first", code="counselor_busy")
    if status == C.AVAILABLE:
        leases.lease_renew("counselor", counselor.id)
    counselor_status_change(counselor=counselor, status=status, actor="counselor")
    return counselor


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
