"""The soak (issue #8): 10,000 random operations against two Daphne nodes and two Celery workers.

Customers join, heart-beat, cancel, confirm joins and vanish; counselors flip
status, heart-beat, confirm and complete; match passes are asked for. Leases
and join deadlines are a few seconds long, so every kind of timeout happens
during the run. After every batch of concurrent operations one consistent
database snapshot must satisfy the invariants; at quiet points (operations
stopped, workers idle) every subscribed page must show its visit's true state
and rank. The seed is printed; ``HEARO_SOAK_SEED`` repeats its random draws
(what they act on still depends on timing). ``HEARO_SOAK_OPERATIONS`` makes a
shorter run for a quick try: it checks every invariant, but only a full run
must show that every kind of operation and outcome happened often enough.
"""

import contextlib
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from itertools import pairwise

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from matching.models import Counselor, CounselorEvent, Match
from matching.tasks import match_pass_task
from queues.models import QueueState, Registration, RegistrationEvent
from tests.support.processes import celery_worker, daphne
from tests.support.soak import ACTIVE, Desk, Op, OpenMatch, RankPage, Soak, View, http
from tests.test_cluster import counselor_with_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.django_db(transaction=True)]

OPERATIONS = int(os.environ.get("HEARO_SOAK_OPERATIONS", "10000"))
CONCURRENCY = 6  # operations in flight at once, by distinct people
QUIET_EVERY = 500  # operations between quiet-point checks
STILL_SECONDS = 1.5  # how long nothing may change before the system counts as quiet
# After each batch the histories of visits that ended longer ago are left to the quiet points' full check.
RECENT_SECONDS = 20
COUNSELORS = 5
# Short enough that leases and join deadlines run out many times in a few minutes.
SERVER_ENV = {
    "HEARO_LEASE_SECONDS": "6",
    "HEARO_HEARTBEAT_SECONDS": "2",
    "HEARO_JOIN_TIMEOUT_SECONDS": "4",
    "HEARO_JOIN_RATE": "100000/m",
}

TERMINAL = ("COMPLETED", "CANCELLED", "EXPIRED")
# Every legal step of a visit; "" is before the join.
TRANSITIONS = {
    ("", "WAITING"),
    ("WAITING", "MATCHED"),
    ("WAITING", "CANCELLED"),
    ("WAITING", "EXPIRED"),
    ("MATCHED", "IN_CALL"),
    ("MATCHED", "WAITING"),  # counselor_no_show or counselor_lost: requeued at its old place
    ("MATCHED", "CANCELLED"),
    ("MATCHED", "EXPIRED"),  # customer_no_show
    ("IN_CALL", "WAITING"),  # counselor_lost
    ("IN_CALL", "CANCELLED"),
    ("IN_CALL", "COMPLETED"),
}
# Match endings that put the customer back in the queue (so it may be matched again).
REQUEUED = {"counselor_no_show", "counselor_lost"}
# The least of each kind a soak must do to prove anything (a run does several times more).
AT_LEAST = {
    "join": 600,
    "heartbeat": 1200,
    "counselor_heartbeat": 100,
    "cancel": 100,
    "status": 100,
    "match": 150,
    "join_confirm": 300,
    "complete": 50,
    "timeout": 50,
}
# ...and of each outcome, counted in the database.
HAPPENED_AT_LEAST = {
    "matches made": 150,
    "calls completed": 50,
    "customers cancelled": 100,
    "customer leases expired": 10,
    "customer no-shows": 10,
    "counselor no-shows": 5,
    "counselor leases expired": 5,
    "counselors lost mid-match": 3,
    "waiting ranks compared": 50,
}


@pytest.fixture
def cluster(tmp_path, redis_url, postgres):
    """Two Daphne nodes and two Celery workers (solo pool) on the test database; yield the nodes' ports."""
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(daphne(tmp_path, f"soak-node-{n}", **SERVER_ENV)) for n in "ab"]
        workers = [stack.enter_context(celery_worker(tmp_path, f"soak-worker-{n}", **SERVER_ENV)) for n in "12"]
        try:
            yield tuple(port for port, _ in nodes)
        finally:
            print_trouble([proc for _, proc in nodes] + workers)


def print_trouble(procs) -> None:
    """Print the servers' warnings and errors (shown when the soak fails), leaving out refused requests."""
    for proc in procs:
        lines = [
            line
            for line in proc.output().splitlines()
            if ("WARNING" in line or "ERROR" in line or "Traceback" in line) and "django.request" not in line
        ]
        if lines:
            print(f"--- {proc.log_path.name}: {len(lines)} warnings or errors, the last ones:")
            print("\n".join(lines[-15:]))


# --- one consistent snapshot -------------------------------------------------------


@contextmanager
def snapshot():
    """Read everything below from one database snapshot (writers go on meanwhile)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def read_view() -> View:
    registrations = Registration.objects.filter(status__in=ACTIVE)
    matches = Match.objects.filter(ended_at__isnull=True).values_list(
        "id", "registration_id", "counselor_id", "customer_joined_at", "counselor_joined_at"
    )
    waiting = registrations.filter(status="WAITING").order_by("enqueued_at", "id")
    return View(
        registrations={r: (c, s) for r, c, s in registrations.values_list("id", "customer_id", "status")},
        matches=[OpenMatch(m, r, c, cj is not None, sj is not None) for m, r, c, cj, sj in matches],
        counselors=dict(Counselor.objects.values_list("id", "status")),
        waiting=list(waiting.values_list("id", flat=True)),
        version=QueueState.objects.filter(pk=1).values_list("version", flat=True).first() or 0,
    )


# --- the invariants -----------------------------------------------------------------


def pairing_problems(view: View) -> list[str]:
    """No counselor or visit in two open matches, one active visit per customer, statuses agree with matches."""
    problems = [
        f"{what} {ident} is in {n} open matches"
        for what, key in (("counselor", "counselor_pk"), ("registration", "registration_id"))
        for ident, n in Counter(getattr(m, key) for m in view.matches).items()
        if n > 1
    ]
    customers = Counter(customer for customer, _ in view.registrations.values())
    problems += [f"customer {c} has {n} active visits" for c, n in customers.items() if n > 1]
    open_by_visit = {m.registration_id: m for m in view.matches}
    for registration, (_, status) in view.registrations.items():
        problems += visit_match_problems(registration, status, open_by_visit.get(registration))
    problems += [
        f"open match {m.id} belongs to an ended visit"
        for m in view.matches
        if m.registration_id not in view.registrations
    ]
    busy = {m.counselor_pk for m in view.matches}
    problems += [
        f"counselor {pk} is {status} with{'' if pk in busy else 'out'} an open match"
        for pk, status in view.counselors.items()
        if (status == "BUSY") != (pk in busy)
    ]
    return problems


def visit_match_problems(registration: int, status: str, match: OpenMatch | None) -> list[str]:
    if status == "WAITING":
        return [f"WAITING visit {registration} has open match {match.id}"] if match else []
    if match is None:
        return [f"{status} visit {registration} has no open match"]
    both = match.customer_joined and match.counselor_joined
    if both != (status == "IN_CALL"):
        return [f"{status} visit {registration}: match {match.id} joined by both = {both}"]
    return []


def history_problems(*, since=None) -> list[str]:
    """Check visits' recorded histories: all of them, or those active or ended since ``since``."""
    visits = Registration.objects.all()
    if since is not None:
        visits = visits.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=since))
    rows = {r: (s, e) for r, s, e in visits.values_list("id", "status", "ended_at")}
    events: dict[int, list[tuple[str, str]]] = {r: [] for r in rows}
    chosen = RegistrationEvent.objects.filter(registration__in=visits).order_by("registration_id", "at", "id")
    for r, frm, to in chosen.values_list("registration_id", "from_status", "to_status"):
        events[r].append((frm, to))
    matches: dict[int, list[str]] = {r: [] for r in rows}
    for r, reason in Match.objects.filter(registration__in=visits).values_list("registration_id", "end_reason"):
        matches[r].append(reason)
    problems = []
    for r, (status, ended_at) in rows.items():
        problems += visit_history_problems(r, status, ended_at, events[r], matches[r])
    return problems


def visit_history_problems(registration, status, ended_at, events, match_reasons) -> list[str]:
    """One visit: starts with its join, steps legally, ends where its status is, matched once for good."""
    where = f"visit {registration} ({status})"
    if not events or events[0] != ("", "WAITING"):
        return [f"{where} does not start with its join: {events[:1]}"]
    problems = [f"{where}: illegal step {step}" for step in events if step not in TRANSITIONS]
    problems += [
        f"{where}: step {after} does not follow {before}" for before, after in pairwise(events) if after[0] != before[1]
    ]
    if events[-1][1] != status:
        problems.append(f"{where}: history ends in {events[-1][1]}")
    if (status in TERMINAL) != (ended_at is not None):
        problems.append(f"{where}: ended_at is {ended_at}")
    if sum(to == "MATCHED" for _, to in events) != len(match_reasons):
        problems.append(f"{where}: {len(match_reasons)} matches but history {events}")
    if sum(reason not in REQUEUED for reason in match_reasons) > 1:
        problems.append(f"{where}: matched twice for good: {match_reasons}")
    return problems


def counselor_history_problems(*, full: bool) -> list[str]:
    """Each counselor's last recorded status is its status (and, in full, every step follows the last)."""
    status = dict(Counselor.objects.values_list("id", "status"))
    events = CounselorEvent.objects.order_by("counselor_id", "at", "id")
    if not full:
        events = events.filter(
            id__in=CounselorEvent.objects.order_by("counselor_id", "-at", "-id").distinct("counselor_id").values("id")
        )
    last: dict[int, str] = {}
    problems = []
    for pk, frm, to in events.values_list("counselor_id", "from_status", "to_status"):
        if full and last.get(pk, "") != frm:
            problems.append(f"counselor {pk}: step {frm} -> {to} follows {last.get(pk)}")
        last[pk] = to
    return problems + [
        f"counselor {pk} is {s} but its history ends in {last.get(pk)}" for pk, s in status.items() if last.get(pk) != s
    ]


def checked_view(*, full: bool = False) -> tuple[View, list[str]]:
    """Return the planner's view and every broken invariant, from one snapshot."""
    with snapshot():
        view = read_view()
        since = None if full else timezone.now() - timedelta(seconds=RECENT_SECONDS)
        problems = pairing_problems(view) + history_problems(since=since) + counselor_history_problems(full=full)
    return view, problems


# --- what the pages show --------------------------------------------------------------


def page_problems(pages: list[RankPage], view: View, statuses: dict[int, str]) -> tuple[dict[int, str], int]:
    """Compare pages with the truth; return the mismatches by visit and how many waiting ranks were right."""
    rank = {registration: n for n, registration in enumerate(view.waiting, start=1)}
    open_match = {m.registration_id: m.id for m in view.matches}
    problems, ranks = {}, 0
    for page in pages:
        registration, shown = page.registration_id, page.shown or {}
        status = statuses[registration]
        if page.problem:
            problems[registration] = page.problem
        elif shown.get("status") != status:
            problems[registration] = f"shows {shown.get('status')} but the visit is {status}"
        elif status == "WAITING" and shown["rank"] != rank[registration]:
            problems[registration] = f"shows rank {shown['rank']}, true rank {rank[registration]}"
        elif status in ("MATCHED", "IN_CALL") and shown.get("matchId") != open_match[registration]:
            problems[registration] = f"shows match {shown.get('matchId')}, the open one is {open_match[registration]}"
        else:
            ranks += status == "WAITING"
    return problems, ranks


def statuses_of(pages: list[RankPage]) -> dict[int, str]:
    ids = [page.registration_id for page in pages]
    return dict(Registration.objects.filter(id__in=ids).values_list("id", "status"))


def passes_queued(broker: redis.Redis) -> bool:
    """Return whether match passes wait in the broker's queue.

    Not the "unacked" hash: a worker killed by an earlier test leaves entries
    there for an hour. A pass a worker already reserved runs within the
    stillness window, and one that changes nothing cannot hide a wrong page.
    """
    return broker.llen("celery") > 0


def settle_and_compare(soak: Soak, pool: ThreadPoolExecutor, broker: redis.Redis, timeout: float = 30) -> int:
    """Stop operating, keep the live pages beating, wait until nothing moves, then compare every page.

    Return how many waiting ranks were compared.
    """
    soak.trigger_pass()  # the last word on overdue leases and deadlines
    deadline = time.monotonic() + timeout
    signature, still_since = None, time.monotonic()
    while True:
        pages = [c.page for c in soak.with_pages()]
        with snapshot():
            view, statuses = read_view(), statuses_of(pages)
        surprises = soak.record(list(pool.map(Op.run, soak.keep_alive(view))), count=False)
        assert not surprises, f"seed {soak.seed}, keeping pages alive:\n" + "\n".join(surprises)
        now = (view.version, frozenset(view.registrations.items()), frozenset(view.matches))
        if now != signature or passes_queued(broker):
            signature, still_since = now, time.monotonic()
        problems, ranks = page_problems(pages, view, statuses)
        if not problems and time.monotonic() - still_since >= STILL_SECONDS:
            return ranks
        if time.monotonic() > deadline:
            pytest.fail(f"seed {soak.seed}: pages disagree once quiet:" + explain(pages, problems))
        time.sleep(0.2)


def retire_pages(soak: Soak, view: View, linger: float = 3.0) -> None:
    """Close pages whose visit ended a while ago once they show how it ended; fail if they show it wrong.

    A page that shows no ending yet stays open: the next quiet point judges it.
    """
    now, due = time.monotonic(), []
    for customer in soak.with_pages():
        page = customer.page
        if page.registration_id not in view.registrations:
            page.gone_since = page.gone_since or now
            if now - page.gone_since >= linger and (page.shown or {}).get("status") in TERMINAL:
                due.append(customer)
    pages = [c.page for c in due]
    problems, _ = page_problems(pages, view, statuses_of(pages))
    assert not problems, f"seed {soak.seed}: pages show the wrong ending:" + explain(pages, problems)
    for customer in due:
        customer.page.close()
        customer.page = None


def explain(pages: list[RankPage], problems: dict[int, str]) -> str:
    """Return each wrong page's problem, the messages it received and its visit's recorded history."""
    by_visit = {page.registration_id: page for page in pages}
    lines = []
    for registration, problem in list(problems.items())[:10]:
        lines.append(f"\nvisit {registration}: the page {problem}; the visit's history:")
        history = RegistrationEvent.objects.filter(registration_id=registration)
        lines += [f"  {e.at:%T.%f} {e.from_status or '-'} -> {e.to_status} ({e.reason}, {e.actor})" for e in history]
        lines.append("  what the page received, in order:")
        for accepted, body in by_visit[registration].received:
            fields = {k: body[k] for k in ("status", "rank", "version", "matchId", "reason", "timestamp") if k in body}
            lines.append(f"  {'shown  ' if accepted else 'dropped'} {fields}")
    return "\n".join(lines)


# --- the soak ---------------------------------------------------------------------------


def desks_on_shift(ports: tuple[int, int]) -> list[Desk]:
    """Create the counselors, each AVAILABLE through the API."""
    desks = []
    for n in range(COUNSELORS):
        counselor, key = counselor_with_token(f"soak{n}")
        status, body = http(ports[n % 2], "POST", "/api/counselor/status", key=key, body={"status": "AVAILABLE"})
        assert status == 200, body
        desks.append(Desk(counselor.pk, counselor.counselor_id, key, beat_at=time.monotonic()))
    return desks


def checked(soak: Soak, done: int, *, full: bool = False) -> View:
    """Return the planner's view after failing on any broken invariant."""
    view, problems = checked_view(full=full)
    assert not problems, f"seed {soak.seed}, after {done} operations:\n" + "\n".join(problems[:20])
    return view


def soak_run(soak: Soak, pool: ThreadPoolExecutor, broker: redis.Redis) -> int:
    """Run every operation, batch by batch, checking after each; return how many waiting ranks were compared."""
    done, compared, quiet_at = 0, 0, QUIET_EVERY
    while True:
        view = checked(soak, done)
        if done >= min(quiet_at, OPERATIONS):
            compared += settle_and_compare(soak, pool, broker)
            view = checked(soak, done, full=True)
            quiet_at += QUIET_EVERY
        retire_pages(soak, view)
        if done >= OPERATIONS:
            return compared
        ops = soak.plan(view, min(CONCURRENCY, OPERATIONS - done))
        surprises = soak.record(list(pool.map(Op.run, ops)))
        assert not surprises, f"seed {soak.seed}, after {done} operations:\n" + "\n".join(surprises)
        done += len(ops)


def test_ten_thousand_random_operations_keep_every_invariant(cluster):
    seed = int(os.environ.get("HEARO_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"soak seed {seed} (HEARO_SOAK_SEED={seed} repeats its random draws)")
    soak = Soak(
        ports=cluster,
        rng=random.Random(seed),
        desks=desks_on_shift(cluster),
        trigger_pass=lambda: match_pass_task.apply_async(expires=5),
        seed=seed,
    )
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        try:
            compared = soak_run(soak, pool, redis.Redis.from_url(settings.CELERY_BROKER_URL))
        finally:
            soak.close_pages()
    report(soak, time.monotonic() - started, compared)


def report(soak: Soak, seconds: float, compared: int) -> None:
    """Print what the run did and prove it did enough of everything to mean something."""
    visits = Counter(RegistrationEvent.objects.values_list("reason", flat=True))
    ends = Counter(Match.objects.values_list("end_reason", flat=True))
    desks = Counter(CounselorEvent.objects.values_list("reason", flat=True))
    print(f"soak seed {soak.seed}: {sum(soak.kinds.values())} operations in {seconds:.0f} s")
    print(f"  operations {dict(soak.kinds)}")
    print(f"  answers {dict(soak.outcomes)}")
    means = {kind: round(soak.seconds[kind] / n, 3) for kind, n in soak.kinds.items()}
    print(f"  mean seconds per operation {means}")
    print(f"  visit steps {dict(visits)}; match ends {dict(ends)}; counselor steps {dict(desks)}")
    happened = {
        "matches made": sum(ends.values()),
        "calls completed": ends["completed"],
        "customers cancelled": visits["cancelled"],
        "customer leases expired": visits["lease_expired"],
        "customer no-shows": ends["customer_no_show"],
        "counselor no-shows": ends["counselor_no_show"],
        "counselor leases expired": desks["lease_expired"],
        "counselors lost mid-match": ends["counselor_lost"],
        "waiting ranks compared": compared,
    }
    print(f"  {happened}")
    if OPERATIONS < 10_000:
        return  # a quick try: leases and deadlines need the full run's minutes
    short = {kind: soak.kinds[kind] for kind, least in AT_LEAST.items() if soak.kinds[kind] < least}
    assert not short, f"seed {soak.seed}: too few operations of some kinds: {short}"
    rare = {what: n for what, n in happened.items() if n < HAPPENED_AT_LEAST[what]}
    assert not rare, f"seed {soak.seed}: too little of some outcomes: {rare}"
