"""How a match ends: the one ``match_end``, and what each ending does to the visit and the counselor.

Callers (the hand-off services, the matcher pass) hold the match's row lock
and call these inside their transaction; everything is published on commit.
The customer never pays for a hand-off that went wrong on the other side:
``match_requeue`` keeps its virtual arrival, so it is back at (or near) the
head of its line.
"""

import logging

from django.utils import timezone

from common import events, publish
from common.logs import event_on_commit
from matching.counselors import counselor_free, counselor_lock, counselor_status_change
from matching.models import Counselor, Match, MatchEvent
from matching.selectors import registration_waiting_body
from queues.models import Registration
from queues.selectors import queue_version, registration_rank
from queues.services import queue_changed, registration_leave, registration_requeue, registration_tell

log = logging.getLogger(__name__)

C = Counselor.Status
S = Registration.Status


def match_record(*, match: Match, what: str, actor: str, note: str = "") -> None:
    MatchEvent.objects.create(match=match, what=what, actor=actor, note=note)


def match_end(
    *,
    match: Match,
    reason: str,
    actor: str,
    by: str | None = None,
    failure: str | None = None,
    note: str = "",
) -> bool:
    """End an open match and tell its counselor; False if it had already ended.

    ``by`` is the side that caused the end, ``failure`` the call-failed
    reason behind it. The conditional UPDATE is the claim: of a timeout and a
    cancel racing, exactly one ends the match and does the rest.
    """
    now = timezone.now()
    if not Match.objects.filter(pk=match.pk, ended_at__isnull=True).update(ended_at=now, end_reason=reason):
        return False
    match.ended_at, match.end_reason = now, reason
    match_record(match=match, what=f"ended: {reason}", actor=actor, note=note)
    body = events.match_ended(match_id=match.id, room_name=match.room_name, reason=reason, by=by, failure=failure)
    publish.to_counselor(match.counselor.counselor_id, body)
    event_on_commit(
        log,
        f"match ended: {reason}",
        event="match.ended",
        match_id=match.id,
        registration_id=match.registration_id,
        counselor_id=match.counselor.counselor_id,
        reason=reason,
        by=by,
        failure=failure,
        actor=actor,
    )
    return True


def match_requeue(*, match: Match, reason: str, actor: str) -> Registration | None:
    """Put an ended match's customer back in line; return the visit if it moved.

    The customer did nothing wrong: it keeps its virtual arrival, so it is at
    (or near) the head of its line. The caller publishes the queue change
    and then tells it (``requeued_tell``).
    """
    registration = match.registration
    return registration if registration_requeue(registration=registration, actor=actor, reason=reason) else None


def requeued_tell(requeued: list[tuple[Registration, str | None]]) -> None:
    """Tell each customer put back in line (and not matched again) its rank, and why it is back.

    Call it after this transaction's ``queue_changed``: the rank set is that version.
    """
    version = queue_version()
    for registration, reason in requeued:
        registration.refresh_from_db(fields=["status"])
        rank = registration_rank(registration=registration)
        if rank is None:
            continue  # matched again in this very pass; it was told MATCHED
        body = registration_waiting_body(registration=registration, rank=rank, version=version, reason=reason)
        registration_tell(registration=registration, body=body)


def requeue_announce(registration: Registration | None, *, reason: str) -> None:
    """Publish one queue change for a visit put back in line outside the pass, and tell its customer."""
    if registration is None:
        return
    queue_changed(reason="requeued", queue_ids=[registration.queue_id])
    requeued_tell([(registration, reason)])


def match_undo_for_counselor(*, match: Match, reason: str, counselor_to: str) -> Registration | None:
    """End a match the counselor failed; requeue its customer. Return the requeued visit."""
    if not match_end(match=match, reason=reason, actor="matcher", by="counselor"):
        return None
    registration = match_requeue(match=match, reason=reason, actor="matcher")  # registration before counselor
    counselor = counselor_lock(counselor_id=match.counselor_id)
    counselor_status_change(counselor=counselor, status=counselor_to, actor="matcher", reason=reason)
    return registration


def match_abandon_by_customer(*, match: Match) -> bool:
    """End a match the customer never tried to join: the visit expires, the counselor is free."""
    if not match_end(match=match, reason="customer_no_show", actor="matcher", by="customer"):
        return False
    registration_leave(registration=match.registration, status=S.EXPIRED, actor="matcher", reason="customer_no_show")
    counselor = counselor_lock(counselor_id=match.counselor_id)
    counselor_status_change(counselor=counselor, status=C.AVAILABLE, actor="matcher", reason="customer_no_show")
    return True


def match_fail(*, match: Match, actor: str, by: str | None, failure: str | None) -> Registration | None:
    """End a hand-off whose call never started as ``call_failed``; return the requeued visit.

    Nobody is to blame: the customer goes back in line keeping its virtual
    arrival, the counselor is AVAILABLE at once (no call, no wrap-up).
    """
    if not match_end(match=match, reason="call_failed", actor=actor, by=by, failure=failure):
        return None
    registration = match_requeue(match=match, reason="call_failed", actor=actor)
    counselor = counselor_lock(counselor_id=match.counselor_id)
    counselor_free(counselor=counselor, actor=actor, reason="call_failed")
    return registration


def match_drop(*, match: Match) -> Registration | None:
    """End a call whose interrupted side never came back as ``call_dropped``; return a requeued visit.

    The customer gone: the visit ends COMPLETED (it had its call), the
    counselor wraps up. The counselor gone: the customer goes back in line
    keeping its virtual arrival, and the counselor is AVAILABLE.
    """
    side = match.interrupted_side
    if not match_end(match=match, reason="call_dropped", actor="matcher", by=side):
        return None
    if side == "customer":
        registration_leave(registration=match.registration, status=S.COMPLETED, actor="matcher", reason="call_dropped")
        match_counselor_free(match=match, reason="call_dropped")
        return None
    registration = match_requeue(match=match, reason="call_dropped", actor="matcher")
    counselor_free(counselor=counselor_lock(counselor_id=match.counselor_id), actor="matcher", reason="call_dropped")
    return registration


def match_counselor_free(*, match: Match, reason: str) -> None:
    """Free the counselor: after a call that took place, into the queue's wrap-up first."""
    counselor = counselor_lock(counselor_id=match.counselor_id)
    wrap_up = match.registration.queue.wrap_up_seconds if match.talked else 0
    counselor_free(counselor=counselor, actor="matcher", reason=reason, wrap_up_seconds=wrap_up)
