"""Reads for the counselor dashboard: the open match and today's calls (no writes)."""

from datetime import datetime, time

from django.utils import timezone

from common import events
from matching.models import Counselor, Match

HISTORY_LIMIT = 50


def _ms(when: datetime | None) -> int | None:
    return events.epoch_ms(when) if when is not None else None


def match_summary(match: Match) -> dict:
    """Return one match as the dashboard shows it (ids as in the push messages)."""
    customer = match.registration.customer
    duration = None
    if match.customer_joined_at and match.counselor_joined_at and match.ended_at:
        # The call ran from the second side's arrival to the end.
        started = max(match.customer_joined_at, match.counselor_joined_at)
        duration = max(0, int((match.ended_at - started).total_seconds()))
    return {
        "matchId": match.id,
        "roomName": match.room_name,
        "registrationId": match.registration_id,
        "customerName": customer.display_name,
        "createdAt": _ms(match.created_at),
        "endedAt": _ms(match.ended_at),
        "customerJoined": match.customer_joined_at is not None,
        "counselorJoined": match.counselor_joined_at is not None,
        "durationSeconds": duration,
        "endReason": match.end_reason,
        # As in MATCH_ASSIGNED / MATCH_INTERRUPTED, so a reloaded dashboard keeps its countdowns.
        "joinDeadline": _ms(match.join_deadline),
        "interrupted": (
            {"side": match.interrupted_side, "reconnectUntil": _ms(match.reconnect_until)}
            if match.interrupted_side and match.ended_at is None
            else None
        ),
    }


def dashboard_open_match(*, counselor: Counselor) -> dict | None:
    """Return the counselor's open match, or None."""
    match = Match.objects.select_related("registration__customer").filter(counselor=counselor, ended_at__isnull=True)
    first = match.first()
    return match_summary(first) if first is not None else None


def dashboard_history_today(*, counselor: Counselor) -> list[dict]:
    """Return the counselor's matches created today (local time), newest first."""
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    matches = (
        Match.objects.select_related("registration__customer")
        .filter(counselor=counselor, created_at__gte=midnight)
        .order_by("-created_at", "-id")[:HISTORY_LIMIT]
    )
    return [match_summary(match) for match in matches]
