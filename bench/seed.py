"""Fast set-up of the bench database through the ORM (run in the harness after django.setup()).

Seeded visits look like real joins to the server: a Customer and a WAITING
Registration with sha256(token), enqueued_at spaced 1 ms apart, the cached
token -> registration mapping and a lease, as ``registration_join`` leaves
them. The database copy of each lease lies a day ahead, so the matcher's
sweep never looks at them (it only reads expired copies).
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from matching.counselors import counselor_create
from matching.models import Counselor, CounselorEvent, Match, MatchEvent
from queues import leases
from queues.models import Customer, Queue, Registration, RegistrationEvent
from queues.selectors import queue_order, queue_snapshot, token_hash
from queues.services import TOKEN_CACHE_SECONDS, queue_changed, queue_default

W = Registration.Status.WAITING
BATCH = 1000
# The several-lines scenario (issue #13): three queues, each in two languages.
LINE_QUEUES = ("general", "youth", "crisis")
LINE_LANGUAGES = ("ko", "en")


@dataclass(frozen=True)
class Seat:
    registration_id: int
    customer_id: str
    token: str


def queue_reset() -> None:
    """Empty every queue and matching table (clients must be closed first)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    models = (RegistrationEvent, MatchEvent, Match, Registration, Customer, CounselorEvent, Counselor, Token)
    tables = [m._meta.db_table for m in (*models, get_user_model())]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    leases.leases_mark_intact()  # else the first sweep would reset every lease copy


def customers_seed(n: int) -> list[Seat]:
    """Put n customers in the queue, in seat order; return their seats."""
    return _seed(n, [(queue_default(), "ko")])


def lines_seed(n: int) -> dict[tuple[str, str], list[Seat]]:
    """Put n customers in the 3 queues x 2 languages, one line after another; return each line's seats in rank order.

    Seat i joins line i mod 6, 1 ms after seat i - 1, so every line is in
    arrival order and the lines interleave in time as real joins would.
    """
    lines = [(queue, language) for queue in lines_queues() for language in LINE_LANGUAGES]
    seats = _seed(n, lines)
    by_line: dict[tuple[str, str], list[Seat]] = {}
    for i, seat in enumerate(seats):
        queue, language = lines[i % len(lines)]
        by_line.setdefault((queue.queue_id, language), []).append(seat)
    return by_line


def lines_queues() -> list[Queue]:
    """Return the scenario's queues, creating the ones besides the default queue (both languages each)."""
    others = [
        Queue.objects.get_or_create(
            queue_id=queue_id, defaults={"name_ko": queue_id, "name_en": queue_id, "languages": list(LINE_LANGUAGES)}
        )[0]
        for queue_id in LINE_QUEUES[1:]
    ]
    return [queue_default(), *others]


def lines_drop() -> None:
    """Delete the scenario's extra queues (after ``queue_reset``): the other scenarios run on the default one."""
    Queue.objects.filter(queue_id__in=LINE_QUEUES[1:]).delete()


def _seed(n: int, lines: list[tuple[Queue, str]]) -> list[Seat]:
    """Put n customers in these lines, round robin, 1 ms apart; return their seats in joining order."""
    now = timezone.now()
    tokens = [secrets.token_urlsafe(24) for _ in range(n)]
    customers = Customer.objects.bulk_create([Customer(display_name=f"bench {i}") for i in range(n)], BATCH)
    far = now + timedelta(days=1)
    regs = []
    for i, (c, t) in enumerate(zip(customers, tokens, strict=True)):
        at = now + timedelta(milliseconds=i)
        queue, language = lines[i % len(lines)]
        regs.append(
            Registration(
                customer=c,
                queue=queue,
                language=language,
                enqueued_at=at,
                virtual_arrival=at,
                queue_since=at,
                token_hash=token_hash(t),
                lease_expires_at=far,
            )
        )
    regs = Registration.objects.bulk_create(regs, BATCH)
    _cache_as_joined(regs)
    _version_bump()
    return [Seat(r.id, c.customer_id, t) for r, c, t in zip(regs, customers, tokens, strict=True)]


def _cache_as_joined(regs: list[Registration]) -> None:
    expires = int((timezone.now().timestamp() + settings.HEARO_LEASE_SECONDS) * 1000)
    for i in range(0, len(regs), BATCH):
        chunk = regs[i : i + BATCH]
        cache.set_many({leases.token_key(r.token_hash): r.id for r in chunk}, timeout=TOKEN_CACHE_SECONDS)
        cache.set_many({f"lease:registration:{r.id}": expires for r in chunk}, timeout=TOKEN_CACHE_SECONDS)


@transaction.atomic(durable=True)
def _version_bump() -> None:
    queue_changed(reason="seeded")


@transaction.atomic(durable=True)
def burst_remove(registration_ids: list[int], queue_ids: list[str] | None = None) -> int:
    """A matcher burst: several customers leave in ONE transaction and ONE queue change.

    ``queue_ids`` names the queues they left, as the matcher pass does (None: the hubs re-read every queue).
    """
    moved = Registration.objects.filter(id__in=registration_ids, status=W).update(
        status=Registration.Status.MATCHED, matched_at=timezone.now()
    )
    queue_changed(reason="matched", queue_ids=queue_ids)  # "matched": the matcher does not react to its own passes
    return moved


def queue_truth() -> list[int]:
    """Return the WAITING registration ids in rank order, as the database has them."""
    return [reg_id for reg_id, _ in queue_snapshot().waiting]


def lines_truth() -> dict[tuple[str, str], list[int]]:
    """Return each line's WAITING registration ids in rank order, as the database has them."""
    return queue_order().lines


def counselor_seed(username: str) -> tuple[str, str]:
    """Create an OFFLINE counselor with an API token; return (counselor id, token key)."""
    from rest_framework.authtoken.models import Token

    counselor = counselor_create(username=username, password=secrets.token_urlsafe(12), display_name=username)
    return counselor.counselor_id, Token.objects.create(user=counselor.user).key
