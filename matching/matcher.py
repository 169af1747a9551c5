"""The matcher pass: expire ghosts, undo overdue hand-offs, pair the queue (STYLE habit 10).

Lock order, everywhere: match, then registration, then counselor, and the
queue version row last (``queue_changed``), so two writers never wait on
each other in a circle.
"""

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from common import events, metrics, publish
from common.db import claim, update_in_id_order
from common.logs import event_on_commit
from matching import pairing
from matching.counselors import ON_LEASE, counselor_status_change
from matching.endings import (
    match_abandon_by_customer,
    match_drop,
    match_fail,
    match_record,
    match_undo_for_counselor,
    requeued_tell,
)
from matching.models import Counselor, Match
from matching.selectors import match_customer_body, requeue_reason
from queues import leases
from queues.models import Queue, Registration
from queues.selectors import queue_open_state, queue_waiting_count
from queues.services import (
    queue_changed,
    registration_expire_ghosts,
    registration_move,
    registration_overflow,
)

log = logging.getLogger(__name__)

C = Counselor.Status
S = Registration.Status


@dataclass
class MatchPassResult:
    expired: int = 0
    counselors_offline: int = 0
    requeued: list[int] = field(default_factory=list)  # registration ids
    abandoned: int = 0
    call_failed: int = 0
    dropped: int = 0
    wrap_ups_ended: int = 0
    overflowed: list[int] = field(default_factory=list)  # registration ids
    matched: list[int] = field(default_factory=list)  # match ids


# When the periodic pass (the beat's, or the in-process loop's) last ran; /readyz
# reads it. Event-driven passes leave it alone: they go on while the beat is dead.
MATCHER_STAMP_KEY = "matcher:last_pass"


def match_pass(*, now: datetime | None = None) -> MatchPassResult:
    """Run one matcher pass: expire ghosts, undo overdue hand-offs, pair the queue.

    Two transactions: the customer ghost sweep (its own service, which
    publishes its own queue change) and then everything else, which
    publishes at most one queue change however many it moved.
    """
    now = now or timezone.now()
    # Read before the customer sweep, which marks the cache intact again.
    intact = leases.leases_intact()
    expired = registration_expire_ghosts(now=now)
    result = _match_pass_commit(now=now, leases_intact=intact)
    result.expired = len(expired)
    metrics.matches.inc(len(result.matched))
    log.debug("matcher pass", extra={"event": "matcher.pass", **asdict(result)})
    return result


def match_pass_periodic() -> MatchPassResult:
    """Run the periodic safety-net pass and stamp readiness with its time."""
    result = match_pass()
    cache.set(MATCHER_STAMP_KEY, time.time(), timeout=None)
    return result


@transaction.atomic(durable=True)
def _match_pass_commit(*, now: datetime, leases_intact: bool) -> MatchPassResult:
    result = MatchPassResult()
    requeued = _counselor_ghosts_sweep(now=now, result=result) if leases_intact else _counselor_leases_refresh(now)
    requeued += _overdue_matches_undo(now=now, result=result)
    requeued += _dropped_calls_end(now=now, result=result)
    result.wrap_ups_ended = _wrap_ups_end(now=now)
    moved = _overflows_move(now=now)
    made = _pairs_make(now=now)
    result.matched = [match.id for match in made]
    result.requeued = [r.id for r, _ in requeued]
    result.overflowed = [r.id for r, _ in moved]
    touched = {r.queue_id for r, _ in requeued} | {m.registration.queue_id for m in made}
    touched |= {q for r, was in moved for q in (was, r.queue_id)}
    if touched:
        reason = "matched" if made else "requeued" if requeued else "overflow"
        queue_changed(reason=reason, queue_ids=sorted(touched))  # once per pass
        requeued_tell(requeued)
        requeued_tell([(r, "overflow") for r, _ in moved])
    return result


def _wrap_ups_end(*, now: datetime) -> int:
    """Make every counselor whose wrap-up ran out AVAILABLE again (before pairing: it may take a call now)."""
    due = list(claim(Counselor.objects.filter(status=C.WRAP_UP, wrap_up_until__lte=now)))
    for counselor in due:
        counselor_status_change(counselor=counselor, status=C.AVAILABLE, actor="matcher", reason="wrap_up_over")
    return len(due)


def _overflows_move(*, now: datetime) -> list[tuple[Registration, str]]:
    """Move customers who waited past their queue's overflow time; return (visit, old queue id) pairs.

    A moved customer keeps its virtual arrival, so it takes its place in time
    in the other line (at or near the head if it waited long). Nobody is moved
    into a queue that is closed or full, or that does not serve their language:
    they keep their place here (and move once it opens or has room).
    """
    moved = []
    rules = Queue.objects.filter(overflow_queue__isnull=False, overflow_after_seconds__isnull=False)
    for queue in rules.select_related("overflow_queue"):
        room = _overflow_room(queue.overflow_queue, now=now)
        if room == 0:
            continue
        since = now - timedelta(seconds=queue.overflow_after_seconds)
        # Only customers whose language the other queue serves: an English speaker
        # moved to a Korean-only line would wait for a counselor it cannot talk to.
        due = Registration.objects.select_related("customer").filter(
            status=S.WAITING, queue=queue, queue_since__lte=since, language__in=queue.overflow_queue.languages
        )
        for registration in claim(due.order_by("virtual_arrival", "id"))[:room]:
            if registration_overflow(registration=registration, to=queue.overflow_queue, now=now):
                moved.append((registration, queue.queue_id))
    return moved


def _overflow_room(target: Queue, *, now: datetime) -> int | None:
    """Return how many more the target queue takes now (None: no cap; 0: closed or full)."""
    if not queue_open_state(queue=target, now=now).open:
        return 0
    if target.max_waiting is None:
        return None
    return max(0, target.max_waiting - queue_waiting_count(queue=target))


# A requeued visit and why it is back in line, in the words its page knows.
Requeued = tuple[Registration, str | None]


def _counselor_ghosts_sweep(*, now: datetime, result: MatchPassResult) -> list[Requeued]:
    """Set OFFLINE every on-shift counselor whose lease ran out; requeue their customers.

    Candidates come from the indexed database copy of the lease; the cache
    has the last word, and a live cache lease refreshes the stale copy (to the
    lease's own expiry, so a closed dashboard is found once it runs out).
    """
    stale = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    candidates = list(claim(Counselor.objects.filter(stale, status__in=ON_LEASE)))
    alive = leases.lease_expiries("counselor", [c.id for c in candidates])
    leases.lease_copies_refresh(Counselor, alive)
    requeued = []
    for counselor in (c for c in candidates if c.id not in alive):
        requeued += _counselor_ghost_drop(counselor=counselor)
        result.counselors_offline += 1
    return requeued


def _counselor_leases_refresh(now: datetime) -> list[Requeued]:
    """Keep everyone on shift after the cache lost every lease (Redis restarted empty).

    Dashboards re-lease on their next beat, well within one lease; the pass
    after that sweeps as usual.
    """
    on_shift = Counselor.objects.filter(status__in=ON_LEASE)
    renewed = update_in_id_order(on_shift, lease_expires_at=leases.lease_db_copy(now))
    if renewed:  # a fresh start has an empty cache too: only news if someone was on shift
        log.warning(
            "lease cache is on a Redis that restarted or took over; nobody sent offline, %d on-shift leases renewed",
            renewed,
        )
    return []


def _counselor_ghost_drop(*, counselor: Counselor) -> list[Requeued]:
    """Take a vanished counselor off shift; a customer it held goes back to the queue."""
    if counselor.status != C.BUSY:
        counselor_status_change(counselor=counselor, status=C.OFFLINE, actor="matcher", reason="lease_expired")
        return []
    # skip_locked here too: whoever holds the match (a complete, a cancel)
    # is ending it already, and waiting for it could close a lock circle.
    match = claim(_open_matches().filter(counselor=counselor)).first()
    if match is None:
        return []
    was = match.registration.status
    registration = match_undo_for_counselor(match=match, reason="counselor_lost", counselor_to=C.OFFLINE)
    return [(registration, requeue_reason(reason="counselor_lost", from_status=was))] if registration else []


def _open_matches() -> QuerySet:
    return Match.objects.select_related("registration__customer", "counselor__user").filter(ended_at__isnull=True)


def _overdue_matches_undo(*, now: datetime, result: MatchPassResult) -> list[Requeued]:
    """Undo every match whose join deadline passed before both sides joined.

    Only a side that never tried (no join, no call-failed report) is a
    no-show. Both tried but the call never started: ``call_failed``, the
    customer back in line, the counselor AVAILABLE. Only the counselor tried:
    the customer is gone; the visit expires and the counselor is AVAILABLE.
    Otherwise (the counselor never tried, whether or not the customer did)
    the customer is requeued at its old place and the counselor goes AWAY,
    so the next customer is not handed to an absent counselor; one click
    makes it AVAILABLE again.
    """
    not_both = Q(customer_joined_at__isnull=True) | Q(counselor_joined_at__isnull=True)
    overdue = claim(_open_matches().filter(not_both, join_deadline__lt=now).order_by("join_deadline", "id"))
    requeued: list[Requeued] = []
    for match in overdue:
        if match.tried("customer") and match.tried("counselor"):
            by, failure = _failed_side(match)
            registration = match_fail(match=match, actor="matcher", by=by, failure=failure)
            result.call_failed += 1
            requeued += [(registration, "call_failed")] if registration else []
        elif match.tried("counselor"):
            result.abandoned += match_abandon_by_customer(match=match)
        else:
            registration = match_undo_for_counselor(match=match, reason="counselor_no_show", counselor_to=C.AWAY)
            requeued += [(registration, "counselor_no_show")] if registration else []
    return requeued


def _failed_side(match: Match) -> tuple[str | None, str | None]:
    """Return the side whose call failed and its reason (no side when both failed: the customer's reason)."""
    failed = [side for side in ("customer", "counselor") if getattr(match, f"{side}_failure")]
    if not failed:
        return None, None
    by = failed[0] if len(failed) == 1 else None
    return by, getattr(match, f"{failed[0]}_failure")


def _dropped_calls_end(*, now: datetime, result: MatchPassResult) -> list[Requeued]:
    """End every interrupted call whose side did not come back within the grace (``call_dropped``)."""
    due = claim(_open_matches().filter(reconnect_until__lt=now).order_by("reconnect_until", "id"))
    requeued: list[Requeued] = []
    for match in due:
        registration = match_drop(match=match)
        result.dropped += 1
        requeued += [(registration, "call_dropped")] if registration else []
    return requeued


def _pairs_make(*, now: datetime) -> list[Match]:
    """Give each AVAILABLE counselor, longest idle first, the earliest-arrived visit it serves.

    Candidates are the first few of each line an idle counselor serves (no
    line can give more than one visit per idle counselor), claimed under row
    locks; the choice itself is pure (``pairing.assign``).
    """
    idle = Counselor.objects.filter(status=C.AVAILABLE, user__is_active=True).order_by("status_changed_at", "id")
    counselors = list(claim(idle.select_related("user")).prefetch_related("queues"))
    if not counselors:
        return []
    skills = {c.id: ({q.queue_id for q in c.queues.all()}, set(c.languages or ())) for c in counselors}
    lines = {(q, lang) for queues, languages in skills.values() for q in queues for lang in languages}
    paused = _pairs_paused(counselors=counselors, now=now)
    waiting = Registration.objects.select_related("customer").filter(status=S.WAITING)
    candidates = []
    for queue_id, language in sorted(lines):
        line = waiting.filter(queue_id=queue_id, language=language).order_by("virtual_arrival", "id")
        # A paused pair may skip the head of a line: look that much further.
        candidates += list(claim(line)[: len(counselors) + len(paused)])

    def serves(counselor: Counselor, registration: Registration) -> bool:
        queues, languages = skills[counselor.id]
        fits = registration.queue_id in queues and registration.language in languages
        return fits and (counselor.id, registration.id) not in paused

    pairs = pairing.assign(counselors, candidates, serves=serves, arrival=lambda r: (r.virtual_arrival, r.id))
    made = (_match_create(registration=r, counselor=c, now=now) for r, c in pairs)
    return [match for match in made if match is not None]


# Match endings after which the same counselor does not get the same customer
# straight back: it released it, or the call between them could not be made.
PAUSED_AFTER = ("call_failed", "released", "call_dropped", "counselor_no_show", "counselor_lost")


def _pairs_paused(*, counselors: list[Counselor], now: datetime) -> set[tuple[int, int]]:
    """Return the (counselor, registration) pairs that ended badly within ``HEARO_REMATCH_PAUSE_SECONDS``.

    Without the pause a released customer, first in line, would go straight
    back to the counselor who released it, and a call that cannot connect
    would be retried with the same two every pass; the customer keeps its
    place and takes the next free counselor instead.
    """
    pause = settings.HEARO_REMATCH_PAUSE_SECONDS
    if pause <= 0:
        return set()
    recent = Match.objects.filter(
        counselor__in=counselors, end_reason__in=PAUSED_AFTER, ended_at__gt=now - timedelta(seconds=pause)
    )
    return set(recent.values_list("counselor_id", "registration_id"))


class _AlreadyMoved(Exception):
    """The registration left WAITING under us (only possible without row locks)."""


def _match_create(*, registration: Registration, counselor: Counselor, now: datetime) -> Match | None:
    """Create one match, or None if the database refuses it (the last line of defense)."""
    deadline = now + timedelta(seconds=settings.HEARO_JOIN_TIMEOUT_SECONDS)
    try:
        with transaction.atomic():  # a savepoint: a refused pair undoes itself, not the pass
            match = Match.objects.create(registration=registration, counselor=counselor, join_deadline=deadline)
            _pair_commit(match=match, registration=registration, counselor=counselor, now=now)
    except (IntegrityError, _AlreadyMoved):
        # One open match per counselor and per registration: a writer we did
        # not see got there first. Log it; the pass goes on with the others.
        log.warning(
            "refused to pair registration %s with counselor %s",
            registration.id,
            counselor.counselor_id,
            extra={
                "event": "match.refused",
                "registration_id": registration.id,
                "counselor_id": counselor.counselor_id,
            },
        )
        return None
    event_on_commit(
        log,
        "match made",
        event="match.made",
        match_id=match.id,
        registration_id=registration.id,
        customer_id=registration.customer.customer_id,
        counselor_id=counselor.counselor_id,
        waited_seconds=round((now - registration.enqueued_at).total_seconds(), 3),
    )
    return match


def _pair_commit(*, match: Match, registration: Registration, counselor: Counselor, now: datetime) -> None:
    moved = registration_move(
        registration=registration,
        to=S.MATCHED,
        expected=(S.WAITING,),
        actor="matcher",
        reason="matched",
        tell=_matched_body(match=match, registration=registration),
        matched_at=now,
    )
    if not moved:
        raise _AlreadyMoved(f"registration {registration.id} is no longer WAITING")
    counselor_status_change(counselor=counselor, status=C.BUSY, actor="matcher", reason="matched")
    match_record(match=match, what="created", actor="matcher")
    _match_assigned_tell(match=match, registration=registration, counselor=counselor)


def _matched_body(*, match: Match, registration: Registration) -> dict:
    return match_customer_body(match=match, registration=registration, status=S.MATCHED)


def _match_assigned_tell(*, match: Match, registration: Registration, counselor: Counselor) -> None:
    customer = registration.customer
    publish.to_counselor(
        counselor.counselor_id,
        events.match_assigned(
            registration_id=registration.id,
            customer_id=customer.customer_id,
            identity=counselor.identity,  # the recipient's own LiveKit identity
            room_name=match.room_name,
            match_id=match.id,
            display_name=customer.display_name,
            queue_id=registration.queue_id,
            language=registration.language,
            urgent=registration.urgent,
            join_deadline=match.join_deadline,
        ),
    )
