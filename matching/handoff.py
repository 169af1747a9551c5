"""The hand-off after a match and its endings: joining the call, completing it,
cancelling the visit, undoing a hand-off that failed.

Every service here locks the match first (see the lock order in
``matcher.py``) and publishes on commit.
"""

import logging

from django.db import transaction
from django.utils import timezone

from common import events, publish
from common.errors import Conflict, Forbidden
from common.logs import event_on_commit
from matching.counselors import counselor_free, counselor_lock, counselor_status_change
from matching.models import Counselor, Match, MatchEvent
from matching.selectors import match_open_by_room, match_side_by_identity
from queues.models import Registration
from queues.services import registration_cancel, registration_leave, registration_move, registration_requeue

log = logging.getLogger(__name__)

C = Counselor.Status
S = Registration.Status
SIDES = ("customer", "counselor")


def _match_lock(match_id: int) -> Match:
    """Lock an open-or-ended match row and return it with its sides loaded."""
    return (
        Match.objects.select_for_update(of=("self",))
        .select_related("registration__customer", "registration__queue", "counselor__user")
        .get(pk=match_id)
    )


# --- Ending a match --------------------------------------------------------------


def match_record(*, match: Match, what: str, actor: str) -> None:
    MatchEvent.objects.create(match=match, what=what, actor=actor)


def match_end(*, match: Match, reason: str, actor: str) -> bool:
    """End an open match and tell its counselor; False if it had already ended.

    The conditional UPDATE is the claim: of a timeout and a cancel racing,
    exactly one ends the match and does the rest.
    """
    now = timezone.now()
    if not Match.objects.filter(pk=match.pk, ended_at__isnull=True).update(ended_at=now, end_reason=reason):
        return False
    match.ended_at, match.end_reason = now, reason
    match_record(match=match, what=f"ended: {reason}", actor=actor)
    body = events.match_ended(match_id=match.id, room_name=match.room_name, reason=reason)
    publish.to_counselor(match.counselor.counselor_id, body)
    event_on_commit(
        log,
        f"match ended: {reason}",
        event="match.ended",
        match_id=match.id,
        registration_id=match.registration_id,
        counselor_id=match.counselor.counselor_id,
        reason=reason,
        actor=actor,
    )
    return True


def match_undo_for_counselor(*, match: Match, reason: str, counselor_to: str) -> Registration | None:
    """End a match the counselor failed; requeue its customer. Return the requeued visit.

    The customer did nothing wrong: it goes back to WAITING with its
    original enqueued_at, so it is at (or near) the head of the queue.
    """
    if not match_end(match=match, reason=reason, actor="matcher"):
        return None
    counselor = counselor_lock(counselor_id=match.counselor_id)
    counselor_status_change(counselor=counselor, status=counselor_to, actor="matcher", reason=reason)
    registration = match.registration
    return registration if registration_requeue(registration=registration, actor="matcher", reason=reason) else None


def match_abandon_by_customer(*, match: Match) -> bool:
    """End a match the customer never joined: the visit expires, the counselor is free."""
    if not match_end(match=match, reason="customer_no_show", actor="matcher"):
        return False
    registration_leave(registration=match.registration, status=S.EXPIRED, actor="matcher", reason="customer_no_show")
    counselor = counselor_lock(counselor_id=match.counselor_id)
    counselor_status_change(counselor=counselor, status=C.AVAILABLE, actor="matcher", reason="customer_no_show")
    return True


# --- Joining, completing, cancelling ---------------------------------------------


@transaction.atomic(durable=True)
def match_joined(*, match_id: int, side: str, actor: str) -> Match:
    """Record that one side joined the call; idempotent. Both in: the visit is IN_CALL."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    match = _match_lock(match_id)
    if not match.is_open:
        raise Conflict(f"the match has ended ({match.end_reason})", code="match_ended")
    field = f"{side}_joined_at"
    if getattr(match, field) is None:
        setattr(match, field, timezone.now())
        match.save(update_fields=[field])
        match_record(match=match, what=f"{side}_joined", actor=actor)
        event_on_commit(
            log,
            f"match joined by the {side}",
            event="match.joined",
            match_id=match.id,
            registration_id=match.registration_id,
            customer_id=match.registration.customer.customer_id,
            counselor_id=match.counselor.counselor_id,
            side=side,
            actor=actor,
        )
    if match.customer_joined_at and match.counselor_joined_at:
        _call_start(match)
    return match


def _call_start(match: Match) -> None:
    registration = match.registration
    customer = registration.customer
    body = events.in_call(
        customer_id=customer.customer_id,
        registration_id=registration.id,
        queue_id=registration.queue_id,
        identity=customer.identity,
        room_name=match.room_name,
        match_id=match.id,
    )
    moved = registration_move(
        registration=registration,
        to=S.IN_CALL,
        expected=(S.MATCHED,),
        actor="matcher",
        reason="both_joined",
        tell=body,
        in_call_at=timezone.now(),
    )
    if not moved:
        return  # already IN_CALL: a repeated confirmation
    event_on_commit(
        log,
        "call started",
        event="match.in_call",
        match_id=match.id,
        registration_id=registration.id,
        customer_id=customer.customer_id,
        counselor_id=match.counselor.counselor_id,
    )
    publish.to_counselor(
        match.counselor.counselor_id,
        events.match_started(
            match_id=match.id,
            registration_id=match.registration_id,
            customer_id=customer.customer_id,
            room_name=match.room_name,
        ),
    )


@transaction.atomic(durable=True)
def match_complete(*, match_id: int, counselor: Counselor) -> Match:
    """End a call as completed (its counselor only); idempotent. The counselor is AVAILABLE again."""
    match = _match_lock(match_id)
    if match.counselor_id != counselor.id:
        raise Forbidden("only this match's counselor can complete it", code="not_your_match")
    if not match.is_open:
        if match.end_reason == "completed":
            return match  # a retry after a lost response
        raise Conflict(f"the match has ended ({match.end_reason})", code="match_ended")
    if match.registration.status != S.IN_CALL:
        raise Conflict("the customer has not joined the call yet", code="not_in_call")
    # "completed" exactly: the wait estimate averages these calls.
    match_end(match=match, reason="completed", actor="counselor")
    registration_leave(registration=match.registration, status=S.COMPLETED, actor="counselor", reason="completed")
    _counselor_free(match=match, reason="completed")
    return match


def _counselor_free(*, match: Match, reason: str) -> None:
    """Free the counselor: after a call that took place, into the queue's wrap-up first."""
    counselor = counselor_lock(counselor_id=match.counselor_id)
    talked = match.customer_joined_at is not None and match.counselor_joined_at is not None
    wrap_up = match.registration.queue.wrap_up_seconds if talked else 0
    counselor_free(counselor=counselor, actor="matcher", reason=reason, wrap_up_seconds=wrap_up)


def visit_cancel(*, registration: Registration) -> str:
    """Cancel a visit wherever it is; idempotent. Return the status now.

    WAITING leaves the queue (``registration_cancel``); MATCHED or IN_CALL
    ends the match and frees the counselor. A matcher may move the visit
    between the two meanwhile, so look again a couple of times.
    """
    for _ in range(3):
        registration.refresh_from_db(fields=["status"])
        if registration.status in (S.MATCHED, S.IN_CALL):
            if _visit_cancel_in_match(registration_id=registration.id):
                return S.CANCELLED
            continue  # the match ended under us (a timeout requeued the visit)
        try:
            return registration_cancel(registration=registration)
        except Conflict:
            registration.refresh_from_db(fields=["status"])
            if registration.status not in (S.MATCHED, S.IN_CALL):
                raise  # COMPLETED or EXPIRED: nothing left to cancel
    raise Conflict("the visit kept changing; retry", code="retry")


@transaction.atomic(durable=True)
def _visit_cancel_in_match(*, registration_id: int) -> bool:
    """End the visit's open match as cancelled; False if there is none any more."""
    open_match = Match.objects.filter(registration_id=registration_id, ended_at__isnull=True).first()
    if open_match is None:
        return False
    match = _match_lock(open_match.pk)  # waits: a cancel must not be skipped
    if not match_end(match=match, reason="customer_cancelled", actor="customer"):
        return False
    registration = Registration.objects.select_related("customer").get(pk=registration_id)
    registration_leave(registration=registration, status=S.CANCELLED, actor="customer", reason="cancelled")
    _counselor_free(match=match, reason="customer_cancelled")
    return True


def match_joined_by_livekit(*, event: str, room_name: str, identity: str) -> bool:
    """Count LiveKit's participant_joined as a join confirmation; True if it counted.

    Anything else (other events, unknown rooms, ended matches, strangers) is
    acknowledged and ignored: LiveKit retries only on errors.
    """
    match = match_open_by_room(room_name=room_name) if event == "participant_joined" else None
    side = match_side_by_identity(match=match, identity=identity) if match else None
    if side is None:
        return False
    try:
        match_joined(match_id=match.id, side=side, actor="livekit")
    except Conflict:
        return False  # ended meanwhile
    return True
