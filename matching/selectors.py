"""Reads of counselors and matches."""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser

from hearo.errors import Forbidden, NotFound, Unauthorized
from matching.models import Counselor, Match, MatchEvent
from queues.models import Registration


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
