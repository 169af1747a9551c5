"""Writes to counselors and matches, and the matcher pass (STYLE habits 2, 3, 10).

The hand-off after a match (joined, complete, cancel) is in ``handoff.py``.
Lock order, everywhere: match, then registration, then counselor, and the
queue version row last (``queue_changed``), so two writers never wait on
each other in a circle.
"""

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from hearo import metrics
from hearo.errors import Conflict
from hearo.logs import event_on_commit
from matching import pairing, triggers
from matching.models import Counselor, CounselorEvent, Match, MatchEvent
from queues import leases
from queues.models import Registration
from queues.selectors import estimate_for_rank, queue_version, registration_rank, wait_stats_forget
from queues.services import (
    queue_changed,
    registration_expire_ghosts,
    registration_leave,
    registration_record,
    registration_tell,
)
from realtime import events, publish

log = logging.getLogger(__name__)

C = Counselor.Status
S = Registration.Status
# What a counselor may choose; BUSY is only ever set by the matcher.
SELF_SERVICE_STATUSES = (C.AVAILABLE, C.AWAY, C.OFFLINE)
# Statuses that need a live heartbeat lease; OFFLINE needs none.
ON_LEASE = (C.AVAILABLE, C.AWAY, C.BUSY)


def claim(queryset: QuerySet) -> QuerySet:
    """Lock the rows a pass is about to change, skipping rows another writer holds.

    On PostgreSQL two concurrent matchers each take the rows the other has
    not locked, so neither waits and no row is handed out twice. SQLite has
    no row locks; its IMMEDIATE transactions already run writers one at a time.
    """
    if not connection.features.has_select_for_update_skip_locked:
        return queryset
    return queryset.select_for_update(skip_locked=True, of=("self",))


# --- Counselors ---------------------------------------------------------------


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


# --- Ending a match -------------------------------------------------------------


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


def registration_requeue(*, registration: Registration, actor: str, reason: str) -> bool:
    """Put a matched customer back in the queue with its original enqueued_at (rank order kept)."""
    was = registration.status
    changed = Registration.objects.filter(pk=registration.pk, status__in=(S.MATCHED, S.IN_CALL)).update(
        status=S.WAITING, matched_at=None, in_call_at=None
    )
    if not changed:
        return False
    registration.status, registration.matched_at, registration.in_call_at = S.WAITING, None, None
    registration_record(registration=registration, from_status=was, actor=actor, reason=reason)
    event_on_commit(
        log,
        "registration requeued",
        event="registration.requeued",
        registration_id=registration.id,
        customer_id=registration.customer.customer_id,
        from_status=was,
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


# --- The matcher pass ----------------------------------------------------------------


@dataclass
class MatchPassResult:
    expired: int = 0
    counselors_offline: int = 0
    requeued: list[int] = field(default_factory=list)  # registration ids
    abandoned: int = 0
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
    result.matched = [match.id for match in _pairs_make(now=now)]
    result.requeued = [r.id for r in requeued]
    if result.matched or requeued:
        queue_changed(reason="matched" if result.matched else "requeued")  # once per pass
        _requeued_tell(requeued)
    return result


def _counselor_ghosts_sweep(*, now: datetime, result: MatchPassResult) -> list[Registration]:
    """Set OFFLINE every on-shift counselor whose lease ran out; requeue their customers.

    Candidates come from the indexed database copy of the lease; the cache
    has the last word, and a live cache lease refreshes the stale copy.
    """
    stale = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    candidates = list(claim(Counselor.objects.filter(stale, status__in=ON_LEASE)))
    alive = leases.lease_alive("counselor", [c.id for c in candidates])
    if alive:
        Counselor.objects.filter(id__in=alive).update(lease_expires_at=_lease_db_copy(now))
    requeued = []
    for counselor in (c for c in candidates if c.id not in alive):
        requeued += _counselor_ghost_drop(counselor=counselor)
        result.counselors_offline += 1
    return requeued


def _counselor_leases_refresh(now: datetime) -> list[Registration]:
    """Keep everyone on shift after the cache lost every lease (Redis restarted empty).

    Dashboards re-lease on their next beat, well within one lease; the pass
    after that sweeps as usual.
    """
    Counselor.objects.filter(status__in=ON_LEASE).update(lease_expires_at=_lease_db_copy(now))
    log.warning("lease cache lost every lease; no counselor sent offline, every on-shift lease renewed")
    return []


def _lease_db_copy(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HEARO_LEASE_SECONDS)


def _counselor_ghost_drop(*, counselor: Counselor) -> list[Registration]:
    """Take a vanished counselor off shift; a customer it held goes back to the queue."""
    if counselor.status != C.BUSY:
        counselor_status_change(counselor=counselor, status=C.OFFLINE, actor="matcher", reason="lease_expired")
        return []
    # skip_locked here too: whoever holds the match (a complete, a cancel)
    # is ending it already, and waiting for it could close a lock circle.
    match = claim(_open_matches().filter(counselor=counselor)).first()
    if match is None:
        return []
    registration = match_undo_for_counselor(match=match, reason="counselor_lost", counselor_to=C.OFFLINE)
    return [registration] if registration else []


def _open_matches() -> QuerySet:
    return Match.objects.select_related("registration__customer", "counselor").filter(ended_at__isnull=True)


def _overdue_matches_undo(*, now: datetime, result: MatchPassResult) -> list[Registration]:
    """Undo every match whose join deadline passed before both sides joined.

    Counselor joined, customer not: the customer is gone; the visit expires
    and the counselor is AVAILABLE. Otherwise (the counselor did not join,
    whether or not the customer did) the customer is requeued at its old
    place and the counselor goes AWAY, so the next customer is not handed
    to an absent counselor; one click makes it AVAILABLE again.
    """
    not_both = Q(customer_joined_at__isnull=True) | Q(counselor_joined_at__isnull=True)
    overdue = claim(_open_matches().filter(not_both, join_deadline__lt=now).order_by("join_deadline", "id"))
    requeued = []
    for match in overdue:
        if match.counselor_joined_at is not None:
            result.abandoned += match_abandon_by_customer(match=match)
            continue
        registration = match_undo_for_counselor(match=match, reason="counselor_no_show", counselor_to=C.AWAY)
        requeued += [registration] if registration else []
    return requeued


def _pairs_make(*, now: datetime) -> list[Match]:
    """Pair the earliest WAITING registrations with the longest-idle AVAILABLE counselors."""
    idle = Counselor.objects.filter(status=C.AVAILABLE, user__is_active=True).order_by("status_changed_at", "id")
    counselors = list(claim(idle))
    if not counselors:
        return []
    queue = Registration.objects.select_related("customer").filter(status=S.WAITING).order_by("enqueued_at", "id")
    registrations = list(claim(queue)[: len(counselors)])
    made = (_match_create(registration=r, counselor=c, now=now) for r, c in pairing.pairs(registrations, counselors))
    return [match for match in made if match is not None]


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
    if not Registration.objects.filter(pk=registration.pk, status=S.WAITING).update(status=S.MATCHED, matched_at=now):
        raise _AlreadyMoved(f"registration {registration.id} is no longer WAITING")
    registration.status, registration.matched_at = S.MATCHED, now
    registration_record(registration=registration, from_status=S.WAITING, actor="matcher", reason="matched")
    counselor_status_change(counselor=counselor, status=C.BUSY, actor="matcher", reason="matched")
    match_record(match=match, what="created", actor="matcher")
    _matched_tell(match=match, registration=registration, counselor=counselor)


def _matched_tell(*, match: Match, registration: Registration, counselor: Counselor) -> None:
    customer = registration.customer
    registration_tell(
        registration=registration,
        body=events.matched(
            customer_id=customer.customer_id,
            registration_id=registration.id,
            identity=customer.identity,  # the recipient's own LiveKit identity
            room_name=match.room_name,
            match_id=match.id,
        ),
    )
    publish.to_counselor(
        counselor.counselor_id,
        events.match_assigned(
            registration_id=registration.id,
            customer_id=customer.customer_id,
            identity=counselor.identity,  # the recipient's own LiveKit identity
            room_name=match.room_name,
            match_id=match.id,
            display_name=customer.display_name,
        ),
    )


def _requeued_tell(requeued: list[Registration]) -> None:
    """Tell each customer put back in the queue (and not matched again) its rank."""
    version = queue_version()  # this transaction's bump: the rank set below is that version
    for registration in requeued:
        registration.refresh_from_db(fields=["status"])
        rank = registration_rank(registration=registration)
        if rank is None:
            continue  # matched again in this very pass; it was told MATCHED
        customer_id = registration.customer.customer_id
        eta = estimate_for_rank(rank)
        body = events.waiting(
            customer_id=customer_id, registration_id=registration.id, rank=rank, version=version, eta=eta
        )
        registration_tell(registration=registration, body=body)
