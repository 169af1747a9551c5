"""Reads of counselors and matches."""

import time
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Avg, F

from common import events
from common.errors import Forbidden, NotFound, Unauthorized
from matching.models import Counselor, Match, MatchEvent
from queues.models import Registration
from queues.ranking import estimate_wait_seconds
from queues.selectors import queue_version, registration_rank, registration_seq


def counselor_for_user(*, user: AbstractBaseUser | None) -> Counselor:
    """Return the active counselor behind a user, or raise Forbidden."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise Unauthorized("counselor login required")
    try:
        return Counselor.objects.select_related("user").get(user=user)
    except Counselor.DoesNotExist:
        raise Forbidden("this account is not a counselor") from None


def counselor_profile(*, counselor: Counselor) -> dict:
    return {
        "counselorId": counselor.counselor_id,
        "username": counselor.user.get_username(),
        "displayName": counselor.name,
        "status": counselor.status,
    }


# --- Waiting: the estimate and the visit's state -------------------------------------

# Calls that feed the wait estimate: the last few completed ones of the last day.
RECENT_CALLS = 20
MIN_RECENT_CALLS = 3
STATS_TTL_SECONDS = 5.0

_stats_cache: dict[str, tuple[float, tuple[int, float | None]]] = {}


def wait_stats() -> tuple[int, float | None]:
    """Return (counselors on shift, average recent call seconds or None), cached briefly."""
    hit = _stats_cache.get("stats")
    if hit and hit[0] > time.monotonic():
        return hit[1]
    on_shift = Counselor.objects.filter(status__in=["AVAILABLE", "BUSY"], user__is_active=True).count()
    recent = (
        Match.objects.filter(end_reason="completed", counselor_joined_at__isnull=False)
        .order_by("-ended_at")
        .values_list("id", flat=True)[:RECENT_CALLS]
    )
    calls = Match.objects.filter(id__in=list(recent))
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


def registration_state(*, registration: Registration) -> dict:
    """Return what the push channel would carry for this registration now, with its ``seq``.

    A visit's state spans both apps (its rank, or its open match), so it is read here.
    """
    state = _registration_state(registration=registration)
    state["seq"] = registration_seq(registration_id=registration.id)
    return state


def _registration_state(*, registration: Registration) -> dict:
    customer_id = registration.customer.customer_id
    if registration.status == Registration.Status.WAITING:
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
        match = Match.objects.filter(registration=registration, ended_at__isnull=True).first()
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


# --- Matches ----------------------------------------------------------------------

Caller = Registration | Counselor


def match_get(*, match_id: int) -> Match:
    """Return a match with its sides loaded, or raise NotFound."""
    try:
        return Match.objects.select_related("registration__customer", "counselor__user").get(pk=match_id)
    except Match.DoesNotExist:
        raise NotFound(f"no match {match_id}") from None


def match_side(*, match: Match, caller: Caller) -> str:
    """Return "customer" or "counselor": the caller's side of the match, or raise Forbidden."""
    if isinstance(caller, Registration) and match.registration_id == caller.id:
        return "customer"
    if isinstance(caller, Counselor) and match.counselor_id == caller.id:
        return "counselor"
    raise Forbidden("you are not a participant of this match", code="not_a_participant")


def match_open_for(*, caller: Caller) -> Match:
    """Return the caller's open match, or raise Forbidden."""
    side = {"registration": caller} if isinstance(caller, Registration) else {"counselor": caller}
    match = (
        Match.objects.select_related("registration__customer", "counselor__user")
        .filter(ended_at__isnull=True, **side)
        .first()
    )
    if match is None:
        raise Forbidden("you have no open match", code="no_open_match")
    return match


def match_open_by_room(*, room_name: str) -> Match | None:
    return (
        Match.objects.select_related("registration__customer", "counselor")
        .filter(room_name=room_name, ended_at__isnull=True)
        .first()
    )


def match_side_by_identity(*, match: Match, identity: str) -> str | None:
    """Return which side a LiveKit identity is in this match, if either."""
    if identity == match.customer_identity:
        return "customer"
    if identity == match.counselor_identity:
        return "counselor"
    return None


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str
    actor: str
    reason: str = ""


def visit_timeline(*, registration: Registration) -> list[TimelineEntry]:
    """Return a visit's story in time order: its transitions and its matches' events."""
    entries = [
        TimelineEntry(e.at, f"{e.from_status or '-'} → {e.to_status}", e.actor, e.reason)
        for e in registration.events.all()
    ]
    for event in MatchEvent.objects.filter(match__registration=registration).select_related("match__counselor"):
        what = f"match {event.match_id} with {event.match.counselor}: {event.what}"
        entries.append(TimelineEntry(event.at, what, event.actor))
    return sorted(entries, key=lambda e: e.at)
