"""Helpers for the routing tests: queues, skills, joins at a chosen time, a frozen clock."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from matching import counselors
from matching.models import Counselor
from queues import selectors, services
from queues.models import Queue, Registration

# A Monday, 12:00 in Seoul: every default queue is open.
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """Return T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def line(queue_id: str, **fields) -> Queue:
    """Create a queue (Korean and English unless told otherwise)."""
    names = {"name_ko": f"{queue_id} (ko)", "name_en": f"{queue_id} (en)"}
    return Queue.objects.create(queue_id=queue_id, **(names | fields))


def joined(seconds: float, *, queue_id: str | None = None, language: str | None = None, urgent: bool = False):
    """Join at T0 + ``seconds``; return the visit."""
    result = services.registration_join(queue_id=queue_id, language=language, urgent=urgent, now=at(seconds))
    return result.registration


def rank(registration: Registration) -> int | None:
    registration.refresh_from_db()
    return selectors.registration_rank(registration=registration)


def skills(counselor: Counselor, *, queues: list[str], languages: list[str]) -> Counselor:
    """Give a counselor these queues and languages (through the staff service)."""
    body = {"queues": queues, "languages": languages}
    return counselors.counselor_skills_set(counselor_id=counselor.counselor_id, body=body, actor="test")


@dataclass
class Clock:
    now: datetime = T0

    def set(self, when: datetime) -> None:
        self.now = when


def frozen_clock(monkeypatch, when: datetime = T0) -> Clock:
    """Freeze ``django.utils.timezone.now`` (everything the services and the API read) at a settable instant."""
    clock = Clock(when)
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock
