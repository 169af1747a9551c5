"""The hand-off after a match: joining the call, a call that fails or drops,
completing it, releasing it, cancelling the visit (how each ends is ``endings.py``).

Every service here locks the match first (see the lock order in
``matcher.py``) and publishes on commit. Who is a no-show: only a side that
never *tried* to join (no join, no call-failed report); a side that tried
and could not get through ends the match as ``call_failed``, and nobody is
blamed.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common import events, publish
from common.errors import Conflict, Forbidden
from common.logs import event_on_commit
from matching.endings import (
    match_counselor_free,
    match_end,
    match_fail,
    match_record,
    match_requeue,
    requeue_announce,
)
from matching.models import Counselor, Match
from matching.selectors import (
    match_customer_body,
    match_open_by_room,
    match_side_by_identity,
)
from queues.models import Registration
from queues.services import (
    registration_cancel,
    registration_leave,
    registration_move,
    registration_record,
    registration_tell,
)

log = logging.getLogger(__name__)

C = Counselor.Status
S = Registration.Status
SIDES = ("customer", "counselor")
# What a side's client may report when it could not join the call.
CALL_FAILURES = ("unreachable", "permission_denied", "timeout", "other")
# The call server could not be reached: waiting for the deadline would not help,
# so the match ends at once. The others (a refused microphone) the side may fix and retry.
CALL_FAILURES_AT_ONCE = ("unreachable", "timeout")


def _match_lock(match_id: int) -> Match:
    """Lock an open-or-ended match row and return it with its sides loaded."""
    return (
        Match.objects.select_for_update(of=("self",))
        .select_related("registration__customer", "registration__queue", "counselor__user")
        .get(pk=match_id)
    )


# --- Joining, completing, cancelling ---------------------------------------------


@transaction.atomic(durable=True)
def match_joined(*, match_id: int, side: str, actor: str) -> Match:
    """Record that one side joined the call; idempotent. Both in: the visit is IN_CALL.

    The side a call was interrupted for is back: the call resumes.
    """
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
        _log_side(match, "match joined", event="match.joined", side=side, actor=actor)
    if match.talked:
        _call_start(match)
    if match.interrupted_side == side:
        _call_resume(match, actor=actor)
    return match


def _log_side(match: Match, message: str, **fields) -> None:
    event_on_commit(
        log,
        message,
        match_id=match.id,
        registration_id=match.registration_id,
        customer_id=match.registration.customer.customer_id,
        counselor_id=match.counselor.counselor_id,
        **fields,
    )


def _call_start(match: Match) -> None:
    registration = match.registration
    customer = registration.customer
    moved = registration_move(
        registration=registration,
        to=S.IN_CALL,
        expected=(S.MATCHED,),
        actor="matcher",
        reason="both_joined",
        tell=match_customer_body(match=match, registration=registration, status=S.IN_CALL),
        in_call_at=timezone.now(),
    )
    if not moved:
        return  # already IN_CALL: a repeated confirmation
    _log_side(match, "call started", event="match.in_call")
    publish.to_counselor(
        match.counselor.counselor_id,
        events.match_started(
            match_id=match.id,
            registration_id=match.registration_id,
            customer_id=customer.customer_id,
            room_name=match.room_name,
        ),
    )


def _call_state_tell(match: Match, *, reason: str, actor: str) -> None:
    """Tell the customer its call's new state (interrupted or resumed).

    Not a change of status, but a history row (IN_CALL -> IN_CALL) all the
    same: it moves the visit's seq, so an interruption and the resume after
    it, leaving from different processes, cannot arrive in the wrong order.
    """
    registration = match.registration
    was = registration.status  # IN_CALL -> IN_CALL
    recorded = registration_record(registration=registration, from_status=was, actor=actor, reason=reason)
    body = match_customer_body(match=match, registration=registration)
    registration_tell(registration=registration, body=body, seq=recorded.id)


@transaction.atomic(durable=True)
def match_left(*, match_id: int, side: str, actor: str) -> bool:
    """Record that one side left the call room; True if it counted.

    In a call (IN_CALL), the call is interrupted, not ended: the side has
    ``HEARO_RECONNECT_GRACE_SECONDS`` to come back before the matcher pass
    ends the match as ``call_dropped``. Before the call started, leaving is
    only recorded: the side tried, and the join deadline settles the rest.
    A second side leaving an interrupted call is recorded too; LiveKit's
    ``room_finished`` for the empty room ends it.
    """
    # Waits for the row: a resume or a complete holding it finishes first. The pass
    # ending a dropped call takes it with skip_locked, so it finds this leave's
    # deadline (or an ended match) and never ends a call resumed meanwhile.
    match = _match_lock(match_id)
    if not match.is_open or getattr(match, f"{side}_joined_at") is None or match.interrupted_side == side:
        return False  # over, never in the room, or a repeated webhook
    if match.registration.status != S.IN_CALL or match.interrupted_side:
        match_record(match=match, what=f"{side}_left", actor=actor)
        return True
    until = timezone.now() + timedelta(seconds=settings.HEARO_RECONNECT_GRACE_SECONDS)
    match.interrupted_side, match.reconnect_until = side, until
    match.save(update_fields=["interrupted_side", "reconnect_until"])
    match_record(match=match, what=f"interrupted: {side}", actor=actor)
    _call_state_tell(match, reason="call_interrupted", actor=actor)
    body = events.match_interrupted(match_id=match.id, side=side, reconnect_until=until)
    publish.to_counselor(match.counselor.counselor_id, body)
    _log_side(match, "call interrupted", event="match.interrupted", side=side, actor=actor)
    return True


def _call_resume(match: Match, *, actor: str) -> None:
    side = match.interrupted_side
    match.interrupted_side, match.reconnect_until = "", None
    match.save(update_fields=["interrupted_side", "reconnect_until"])
    match_record(match=match, what=f"resumed: {side}", actor=actor)
    _call_state_tell(match, reason="call_resumed", actor=actor)
    publish.to_counselor(match.counselor.counselor_id, events.match_resumed(match_id=match.id))
    _log_side(match, "call resumed", event="match.resumed", side=side, actor=actor)


@transaction.atomic(durable=True)
def match_call_failed(*, match_id: int, side: str, reason: str, detail: str, actor: str) -> Match:
    """Record that one side tried to join and could not; idempotent.

    ``unreachable`` or ``timeout`` before the call started ends the match at
    once as ``call_failed`` (``match_fail``); anything else is recorded only:
    the side may fix its microphone and retry until the join deadline, and it
    is no no-show then. In a call that already started, a report is recorded
    only: LiveKit's webhooks, or the counselor (complete, release), end it.
    """
    if reason not in CALL_FAILURES:
        raise ValueError(f"reason must be one of {CALL_FAILURES}")
    # The lock orders this report against the other side's, a cancel and the
    # join-deadline pass (which skips a locked row): whoever ends the match
    # first wins, and the loser sees it ended (200 if call_failed, else 409).
    match = _match_lock(match_id)
    if not match.is_open:
        if match.end_reason == "call_failed":
            return match  # a retry, or the other side's report got there first
        raise Conflict(f"the match has ended ({match.end_reason})", code="match_ended")
    setattr(match, f"{side}_failure", reason)
    match.save(update_fields=[f"{side}_failure"])
    match_record(match=match, what=f"call_failed:{side}:{reason}", actor=actor)
    # The detail is the client's own words about its error: logged for support, never shown.
    _log_side(match, "call failed", event="match.call_failed", side=side, failure=reason, detail=detail, actor=actor)
    if reason in CALL_FAILURES_AT_ONCE and match.registration.status == S.MATCHED:
        requeue_announce(match_fail(match=match, actor=actor, by=side, failure=reason), reason="call_failed")
    return match


def _counselor_match_lock(match_id: int, *, counselor: Counselor, ending: str) -> Match:
    """Lock the counselor's own match for ``ending`` it; an ended one only if it ended that way (a retry).

    Another counselor is 403 ``not_your_match``; a match that ended otherwise is 409 ``match_ended``.
    """
    match = _match_lock(match_id)
    if match.counselor_id != counselor.id:
        raise Forbidden("only this match's counselor can do that", code="not_your_match")
    if not match.is_open and match.end_reason != ending:
        raise Conflict(f"the match has ended ({match.end_reason})", code="match_ended")
    return match


@transaction.atomic(durable=True)
def match_complete(*, match_id: int, counselor: Counselor) -> Match:
    """End a call as completed (its counselor only); idempotent. The counselor is AVAILABLE again."""
    match = _counselor_match_lock(match_id, counselor=counselor, ending="completed")
    if not match.is_open:
        return match  # a retry after a lost response
    if match.registration.status != S.IN_CALL:
        raise Conflict("the customer has not joined the call yet", code="not_in_call")
    # "completed" exactly: the wait estimate averages these calls.
    match_end(match=match, reason="completed", actor="counselor", by="counselor")
    registration_leave(registration=match.registration, status=S.COMPLETED, actor="counselor", reason="completed")
    match_counselor_free(match=match, reason="completed")
    return match


@transaction.atomic(durable=True)
def match_release(*, match_id: int, counselor: Counselor, reason: str = "") -> Match:
    """Let the match's counselor give its customer back to the queue (before or during the call); idempotent.

    The match ends as ``released``; the customer goes back in line keeping
    its virtual arrival and is told; the counselor is AVAILABLE, or wraps up
    if a call took place. ``reason`` is the counselor's own words, kept in
    the match's history for supervisors, never shown to the customer.
    """
    # A release racing a cancel, a call-failed report or the deadline pass: the
    # row lock (and match_end's conditional UPDATE) lets exactly one end the match.
    match = _counselor_match_lock(match_id, counselor=counselor, ending="released")
    if not match.is_open:
        return match  # a retry after a lost response
    actor = f"counselor:{counselor.counselor_id}"
    match_end(match=match, reason="released", actor=actor, by="counselor", note=reason)
    registration = match_requeue(match=match, reason="released", actor=actor)
    match_counselor_free(match=match, reason="released")
    requeue_announce(registration, reason="released")
    return match


def visit_cancel(*, registration: Registration) -> str:
    """Cancel a visit wherever it is; idempotent. Return the status now.

    WAITING leaves the queue (``registration_cancel``); MATCHED or IN_CALL
    ends the match and frees the counselor. A matcher may move the visit
    between the two meanwhile, so look again a couple of times.
    """
    for attempt in range(3):
        if attempt:  # the first time, the status authentication just read will do
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
    if not match_end(match=match, reason="customer_cancelled", actor="customer", by="customer"):
        return False
    registration = Registration.objects.select_related("customer").get(pk=registration_id)
    registration_leave(registration=registration, status=S.CANCELLED, actor="customer", reason="cancelled")
    match_counselor_free(match=match, reason="customer_cancelled")
    return True


@transaction.atomic(durable=True)
def match_room_finished(*, match_id: int) -> bool:
    """End the open match of a room LiveKit closed; True if it ended here.

    A call that took place is over (``completed``); a room that closed before
    the call started is a hand-off that failed (``call_failed``).
    """
    match = _match_lock(match_id)
    if not match.is_open:
        return False
    if match.registration.status == S.IN_CALL:
        match_end(match=match, reason="completed", actor="livekit")
        registration_leave(registration=match.registration, status=S.COMPLETED, actor="livekit", reason="completed")
        match_counselor_free(match=match, reason="completed")
        return True
    requeue_announce(match_fail(match=match, actor="livekit", by=None, failure=None), reason="call_failed")
    return True


def match_livekit_event(*, event: str, room_name: str, identity: str) -> bool:
    """Apply a LiveKit webhook to the room's open match; True if it counted.

    ``participant_joined`` is a join, ``participant_left`` a leave (an
    interruption in a call), ``room_finished`` the end of the room. Anything
    else (other events, unknown rooms, ended matches, strangers) is
    acknowledged and ignored: LiveKit retries only on errors.
    """
    if event not in ("participant_joined", "participant_left", "room_finished"):
        return False
    match = match_open_by_room(room_name=room_name)
    if match is None:
        return False
    if event == "room_finished":
        return match_room_finished(match_id=match.id)
    side = match_side_by_identity(match=match, identity=identity)
    if side is None:
        return False
    if event == "participant_left":
        return match_left(match_id=match.id, side=side, actor="livekit")
    try:
        match_joined(match_id=match.id, side=side, actor="livekit")
    except Conflict:
        return False  # ended meanwhile
    return True
