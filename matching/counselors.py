"""A counselor's shift: the one writer of its status, its lease, its account (STYLE habits 2, 3, 10).

``counselor_status_change`` is the only place that assigns ``Counselor.status``.
"""

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from common import events, publish
from common.errors import Conflict, DomainError, NotFound
from common.logs import event_on_commit
from matching import triggers
from matching.models import Counselor, CounselorEvent
from matching.selectors import SERVING, wait_stats_forget
from queues import leases
from queues.models import Queue
from queues.selectors import queue_version
from queues.services import queue_default

log = logging.getLogger(__name__)

C = Counselor.Status
# What a counselor may choose; BUSY is only ever set by the matcher.
SELF_SERVICE_STATUSES = (C.AVAILABLE, C.AWAY, C.OFFLINE)
# Statuses that need a live heartbeat lease; OFFLINE needs none.
ON_LEASE = (C.AVAILABLE, C.AWAY, C.BUSY, C.WRAP_UP)


def counselor_record(*, counselor: Counselor, from_status: str, actor: str, reason: str = "") -> None:
    CounselorEvent.objects.create(
        counselor=counselor, from_status=from_status, to_status=counselor.status, actor=actor, reason=reason
    )


def counselor_status_change(
    *, counselor: Counselor, status: str, actor: str, reason: str = "", wrap_up_seconds: int = 0
) -> bool:
    """Set a counselor's status if it differs; record and publish it. Return whether it changed.

    The one writer of ``Counselor.status``. WRAP_UP lasts ``wrap_up_seconds``;
    the matcher pass makes the counselor AVAILABLE when it runs out.
    """
    was = counselor.status
    if was == status:
        return False
    now = timezone.now()
    until = now + timedelta(seconds=wrap_up_seconds) if status == C.WRAP_UP else None
    changed = Counselor.objects.filter(pk=counselor.pk, status=was).update(
        status=status, status_changed_at=now, wrap_up_until=until
    )
    if not changed:
        raise Conflict("the counselor's status changed meanwhile; retry", code="status_conflict")
    counselor.status, counselor.status_changed_at, counselor.wrap_up_until = status, now, until
    counselor_record(counselor=counselor, from_status=was, actor=actor, reason=reason)
    body = events.counselor_status(counselor_id=counselor.counselor_id, status=status, wrap_up_until=until)
    publish.to_counselor(counselor.counselor_id, body)
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
    if (was in SERVING) != (status in SERVING):
        staffing_changed(queue_ids=set(counselor.queues.values_list("queue_id", flat=True)))
    if status == C.AVAILABLE:
        # Every freed seat passes through here: a status click, a completed
        # call, a customer no-show or cancel. Ask for a pass once it commits.
        transaction.on_commit(triggers.request_match_pass, robust=True)
    elif status == C.WRAP_UP:
        # And once more when the wrap-up runs out, rather than at the next beat.
        transaction.on_commit(partial(triggers.request_match_pass, after=wrap_up_seconds), robust=True)
    return True


def staffing_changed(*, queue_ids: set[str]) -> None:
    """After commit, tell every node's hub that who serves these queues changed: their estimates move.

    Not a change of order, so the queue version is not bumped; the hubs re-read
    the wait board and push the customers whose estimate is news.
    """
    if queue_ids:
        publish.queue_changed(version=queue_version(), queue_ids=sorted(queue_ids), reason="staffing")


def counselor_free(*, counselor: Counselor, actor: str, reason: str, wrap_up_seconds: int = 0) -> bool:
    """Free a counselor after a match: WRAP_UP for ``wrap_up_seconds`` after a call, else AVAILABLE."""
    if wrap_up_seconds > 0:
        return counselor_status_change(
            counselor=counselor, status=C.WRAP_UP, actor=actor, reason=reason, wrap_up_seconds=wrap_up_seconds
        )
    return counselor_status_change(counselor=counselor, status=C.AVAILABLE, actor=actor, reason=reason)


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
    queue = queue_default()
    counselor = Counselor.objects.create(user=user, display_name=display_name, languages=list(queue.languages))
    counselor.queues.add(queue)  # serves the default queue in all its languages until staff say otherwise
    counselor_record(counselor=counselor, from_status="", actor="admin", reason="created")
    return counselor


def _skills_error(field: str, detail: str, code: str = "invalid_skills") -> DomainError:
    return DomainError(f"{field}: {detail}", code=code, extra={"field": field})


def _skills_clean(body: object) -> dict:
    if not isinstance(body, dict) or not body:
        raise _skills_error("body", "expected {queues?: [queueId, …], languages?: [code, …]}")
    unknown = sorted(set(body) - {"queues", "languages"})
    if unknown:
        raise _skills_error(unknown[0], "unknown field; expected queues and/or languages")
    for name in body:
        value = body[name]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _skills_error(name, "expected a list of strings")
        if len(set(value)) != len(value):
            raise _skills_error(name, "an entry is listed twice")
    return body


def counselor_skills_check(*, queues: list[Queue], languages: list[str]) -> None:
    """Refuse a language that none of ``queues`` serves (the REST API and the admin form ask the same).

    A language nobody could bring would only make a counselor look on duty
    for a line it can never take.
    """
    served = {code for queue in queues for code in queue.languages}
    strays = [code for code in languages if code not in served]
    if strays:
        raise _skills_error(
            "languages", f"none of this counselor's queues serves {strays[0]!r}", code="unsupported_language"
        )


@transaction.atomic(durable=True)
def counselor_skills_set(*, counselor_id: str, body: object, actor: str) -> Counselor:
    """Set the queues and languages a counselor serves (either or both, from a PATCH body)."""
    skills = _skills_clean(body)
    return counselor_skills_change(
        counselor_id=counselor_id, queue_ids=skills.get("queues"), languages=skills.get("languages"), actor=actor
    )


# Not durable: the Django admin's change view already runs inside a transaction
# (its save goes through here, so the dashboard and the matcher hear it alike).
@transaction.atomic
def counselor_skills_change(
    *, counselor_id: str, queue_ids: list[str] | None, languages: list[str] | None, actor: str
) -> Counselor:
    """Set a counselor's queues and/or languages (None: keep); the dashboard hears SKILLS, the matcher looks again.

    Every queue must exist, and every language must be served by one of the counselor's queues.
    """
    counselor = Counselor.objects.select_for_update().select_related("user").filter(counselor_id=counselor_id).first()
    if counselor is None:
        raise NotFound(f"no counselor {counselor_id!r}")
    served_before = set(counselor.queues.values_list("queue_id", flat=True))
    if queue_ids is not None:
        queues = list(Queue.objects.filter(queue_id__in=queue_ids))
        missing = sorted(set(queue_ids) - {q.queue_id for q in queues})
        if missing:
            raise _skills_error("queues", f"no queue {missing[0]!r}", code="unknown_queue")
    else:
        queues = list(counselor.queues.all())
    languages = list(counselor.languages or []) if languages is None else list(languages)
    counselor_skills_check(queues=queues, languages=languages)
    counselor.languages = languages
    counselor.save(update_fields=["languages"])
    counselor.queues.set(queues)
    publish.to_counselor(counselor.counselor_id, events.counselor_skills(counselor_id=counselor.counselor_id))
    event_on_commit(
        log,
        "counselor skills set",
        event="counselor.skills",
        counselor_id=counselor.counselor_id,
        queues=sorted(q.queue_id for q in queues),
        languages=languages,
        actor=actor,
    )
    transaction.on_commit(wait_stats_forget)
    if counselor.status in SERVING:
        staffing_changed(queue_ids=served_before | {q.queue_id for q in queues})
    transaction.on_commit(triggers.request_match_pass, robust=True)
    return counselor
