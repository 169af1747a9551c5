"""Reads of counselors and matches."""

import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from common import events
from common.errors import Forbidden, NotFound, Unauthorized
from matching.models import Counselor, Match, MatchEvent
from queues.models import Queue, Registration
from queues.ranking import estimate_wait_seconds
from queues.selectors import (
    queue_line_counts,
    queue_list,
    queue_open_state,
    queue_version,
    registration_rank,
    registration_seq,
)


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
        "queues": sorted(q.queue_id for q in counselor.queues.all()),
        "languages": list(counselor.languages or ()),
        "wrapUpUntil": events.epoch_ms(counselor.wrap_up_until) if counselor.wrap_up_until else None,
    }


def counselor_list() -> list[Counselor]:
    """Return every counselor with its skills loaded, by username."""
    return list(Counselor.objects.select_related("user").prefetch_related("queues").order_by("user__username"))


def counselor_by_id(*, counselor_id: str) -> Counselor:
    """Return a counselor by its public id, or raise NotFound."""
    try:
        return Counselor.objects.select_related("user").get(counselor_id=counselor_id)
    except Counselor.DoesNotExist:
        raise NotFound(f"no counselor {counselor_id!r}") from None


# --- Waiting: the estimate and the visit's state -------------------------------------

# Calls that feed the wait estimate: the last few completed ones of each queue.
RECENT_CALLS = 20
MIN_RECENT_CALLS = 3
STATS_TTL_SECONDS = 5.0
# Counselors who will take a call soon: on shift and not AWAY.
SERVING = ("AVAILABLE", "BUSY", "WRAP_UP")


@dataclass(frozen=True)
class WaitBoard:
    """What the wait estimate of every line needs, read at once and cached briefly."""

    serving: dict[tuple[str, str], int]  # (queue id, language) -> counselors serving it now
    handle_seconds: dict[str, float]  # queue id -> average recent call (the default with no history)
    closed: frozenset[str]  # queues closed right now
    default_handle_seconds: float

    def estimate(self, *, queue_id: str, language: str, rank: int) -> tuple[int | None, str | None]:
        """Return (seconds, None), or (None, why) when no number would be honest."""
        counselors = self.serving.get((queue_id, language), 0)
        if counselors == 0:
            return None, "closed" if queue_id in self.closed else "no_counselor_online"
        average = self.handle_seconds.get(queue_id, self.default_handle_seconds)
        return estimate_wait_seconds(rank=rank, counselors_on_shift=counselors, average_call_seconds=average), None


_board_cache: dict[str, tuple[float, WaitBoard]] = {}


def wait_board() -> WaitBoard:
    """Return the wait board (three queries), cached for STATS_TTL_SECONDS."""
    hit = _board_cache.get("board")
    if hit and hit[0] > time.monotonic():
        return hit[1]
    board = WaitBoard(
        serving=_serving_counts(),
        handle_seconds=_handle_seconds(),
        closed=_closed_queues(),
        default_handle_seconds=float(settings.HEARO_DEFAULT_HANDLE_SECONDS),
    )
    _board_cache["board"] = (time.monotonic() + STATS_TTL_SECONDS, board)
    return board


def _serving_counts() -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    rows = Counselor.objects.filter(status__in=SERVING, user__is_active=True, queues__isnull=False)
    for languages, queue_id in rows.values_list("languages", "queues"):
        for language in languages or ():
            counts[(queue_id, language)] = counts.get((queue_id, language), 0) + 1
    return counts


def _handle_seconds() -> dict[str, float]:
    """Return each queue's average recent call; a queue short of history borrows the service's."""
    recent = (
        Match.objects.filter(end_reason="completed", counselor_joined_at__isnull=False)
        .order_by("-ended_at")
        .values_list("registration__queue_id", "counselor_joined_at", "ended_at")[: RECENT_CALLS * 10]
    )
    per_queue: dict[str, list[float]] = {}
    overall: list[float] = []
    for queue_id, joined, ended in recent:
        seconds = (ended - joined).total_seconds()
        if len(overall) < RECENT_CALLS:
            overall.append(seconds)
        calls = per_queue.setdefault(queue_id, [])
        if len(calls) < RECENT_CALLS:
            calls.append(seconds)
    averages = {q: sum(c) / len(c) for q, c in per_queue.items() if len(c) >= MIN_RECENT_CALLS}
    if len(overall) >= MIN_RECENT_CALLS:
        fallback = sum(overall) / len(overall)
        for queue_id in Queue.objects.values_list("queue_id", flat=True):
            averages.setdefault(queue_id, fallback)
    return averages


def _closed_queues() -> frozenset[str]:
    now = timezone.now()
    return frozenset(q.queue_id for q in Queue.objects.all() if not queue_open_state(queue=q, now=now).open)


def wait_stats_forget() -> None:
    """Drop the cached board (a counselor's shift or skills changed)."""
    _board_cache.clear()


def queues_public(*, language: str | None, now: datetime | None = None) -> list[dict]:
    """Return what a customer choosing a line sees: each queue, open or not, its waits and where else to turn.

    ``estimatedWaitSeconds`` is what someone joining now would be told (the
    queue's first language; each language's in ``lines``).
    """
    now = now or timezone.now()
    board = wait_board()
    counts = queue_line_counts()
    shown = []
    for queue in queue_list():
        state = queue_open_state(queue=queue, now=now)
        # Every language, served now or not: the cap the join checks counts them all.
        waiting = sum(n for (queue_id, _), n in counts.items() if queue_id == queue.queue_id)
        full = queue.max_waiting is not None and waiting >= queue.max_waiting
        lines = []
        for code in queue.languages:
            eta, why = board.estimate(
                queue_id=queue.queue_id, language=code, rank=counts.get((queue.queue_id, code), 0) + 1
            )
            if not state.open:
                eta, why = None, "closed"
            lines.append(
                {
                    "language": code,
                    "waiting": counts.get((queue.queue_id, code), 0),
                    "estimatedWaitSeconds": eta,
                    "estimatedWaitReason": why,
                }
            )
        shown.append(
            {
                "queueId": queue.queue_id,
                "name": queue.name_in((language or "").split("-")[0]),
                "languages": list(queue.languages),
                "open": state.open,
                "accepting": state.open and not full,
                "full": full,
                "opensAt": state.opens_at_ms,
                "waiting": waiting,
                "estimatedWaitSeconds": lines[0]["estimatedWaitSeconds"] if lines else None,
                "estimatedWaitReason": lines[0]["estimatedWaitReason"] if lines else "closed",
                "urgentHeadStartSeconds": queue.urgent_head_start_seconds,
                "alternatives": list(queue.alternatives),
                "lines": lines,
            }
        )
    return shown


def estimate_for(*, registration: Registration, rank: int) -> tuple[int | None, str | None]:
    return wait_board().estimate(queue_id=registration.queue_id, language=registration.language, rank=rank)


def registration_state(*, registration: Registration) -> dict:
    """Return what the push channel would carry for this registration now, with its ``seq``.

    A visit's state spans both apps (its rank, or its open match), so it is read here.
    """
    state = _registration_state(registration=registration)
    state["seq"] = registration_seq(registration_id=registration.id)
    return state


def registration_waiting_body(*, registration: Registration, rank: int, version: int, reason: str | None) -> dict:
    """Return a WAITING visit's message: its rank in its line, the estimate, and why it moved (if news)."""
    eta, why = estimate_for(registration=registration, rank=rank)
    return events.waiting(
        customer_id=registration.customer.customer_id,
        registration_id=registration.id,
        queue_id=registration.queue_id,
        rank=rank,
        version=version,
        eta=eta,
        eta_reason=why,
        reason=reason,
    )


def _registration_state(*, registration: Registration) -> dict:
    customer_id = registration.customer.customer_id
    if registration.status == Registration.Status.WAITING:
        return registration_waiting_body(
            registration=registration,
            rank=registration_rank(registration=registration),
            version=queue_version(),
            reason=_back_in_line_reason(registration=registration),
        )
    if registration.status in (Registration.Status.MATCHED, Registration.Status.IN_CALL):
        match = (
            Match.objects.select_related("counselor__user")
            .filter(registration=registration, ended_at__isnull=True)
            .first()
        )
        if match is not None:
            return match_customer_body(match=match, registration=registration)
    return events.terminal(
        customer_id=customer_id,
        registration_id=registration.id,
        queue_id=registration.queue_id,
        status=registration.status,
        reason=registration.left_reason,
    )


def match_customer_body(*, match: Match, registration: Registration, status: str | None = None) -> dict:
    """Return the MATCHED or IN_CALL message of a visit's open match (IN_CALL: with any interruption).

    ``status`` is the visit's status the message announces (default: the one it has now).
    """
    args = {
        "customer_id": registration.customer.customer_id,
        "registration_id": registration.id,
        "queue_id": registration.queue_id,
        "identity": registration.customer.identity,  # the recipient's own LiveKit identity
        "room_name": match.room_name,
        "match_id": match.id,
        "counselor_name": match.counselor.name,
        "join_deadline": match.join_deadline,
    }
    if (status or registration.status) != Registration.Status.IN_CALL:
        return events.matched(**args)
    return events.in_call(**args, interrupted_side=match.interrupted_side, reconnect_until=match.reconnect_until)


def requeue_reason(*, reason: str, from_status: str) -> str | None:
    """Return why a customer is back in line, in the words its page knows (``events.REQUEUE_REASONS``).

    A counselor whose dashboard vanished (``counselor_lost``) is, to the
    customer, one who never came (before the call) or whose call dropped.
    """
    if reason == "counselor_lost":
        return "call_dropped" if from_status == Registration.Status.IN_CALL else "counselor_no_show"
    return reason if reason in events.REQUEUE_REASONS else None


def _back_in_line_reason(*, registration: Registration) -> str | None:
    """Return why the visit is back in line, while its newest change is that requeue (a reload still says why)."""
    newest = registration.events.order_by("-id").values("from_status", "to_status", "reason").first()
    if not newest or newest["to_status"] != Registration.Status.WAITING:
        return None
    if newest["from_status"] not in (Registration.Status.MATCHED, Registration.Status.IN_CALL):
        return None
    return requeue_reason(reason=newest["reason"], from_status=newest["from_status"])


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
        Match.objects.select_related("registration__customer", "counselor__user")
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
        what += f" ({event.note})" if event.note else ""
        entries.append(TimelineEntry(event.at, what, event.actor))
    return sorted(entries, key=lambda e: e.at)
