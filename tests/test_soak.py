"""The soak (issues #8, #13): 10,000 random operations against two Daphne nodes and two Celery workers.

Customers join one of three queues (general, youth, crisis) in Korean or
English, some of them urgent, heart-beat, cancel, confirm joins and vanish;
youth customers overflow into general after a few seconds; counselors with
different skills flip status, heart-beat, confirm and complete, and wrap up
for a few seconds after a call; match passes are asked for. Leases and join
deadlines are a few seconds long, so every kind of timeout happens during the
run. After every batch of concurrent operations one consistent database
snapshot must satisfy the invariants: no visit lost or duplicated, no
counselor or visit in two open matches, no skill violation, every visit's
virtual arrival and every line's order equal to a recomputation from the join
times. At quiet points (operations stopped, workers idle) every subscribed
page must show its visit's true state, queue and recomputed rank.

The servers run on a Redis Sentinel topology (a primary, a replica, three
sentinels; bench/redis_ha.py), and half-way through the operations the
primary is SIGKILLed while they go on: the soak continues against the promoted
replica. Until the first quiet point after the kill, a 503 ``unavailable``
is an answer it accepts (counted in the summary, with the failover's
timeline; one without a Retry-After header fails the run at its end), and a
page whose socket was closed opens it again as the real page does (counted
too); every invariant holds throughout, and every server process outlives
the failover. The seed is
printed; ``HEARO_SOAK_SEED`` repeats its random draws (what they act on still
depends on timing). ``HEARO_SOAK_OPERATIONS`` makes a shorter run for a quick
try: it checks every invariant, but only a full run must show that every kind
of operation and outcome happened often enough.
"""

import contextlib
import os
import random
import re
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import redis
import redis.sentinel
from celery import Celery
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from bench.redis_ha import RedisHa, redis_ha, redis_ha_available
from matching.counselors import counselor_skills_set
from matching.models import Counselor, CounselorEvent, Match
from queues import staff
from queues.models import Queue, QueueState, Registration, RegistrationEvent
from queues.selectors import queue_order
from queues.services import queue_default
from tests.conftest import need
from tests.support.processes import celery_worker, daphne
from tests.support.soak import ACTIVE, Desk, Gap, Op, OpenMatch, RankPage, Soak, View, http
from tests.test_cluster import counselor_with_token

# A full run took 9 to 14 minutes on 2 shared cores with the Sentinel topology running beside it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.django_db(transaction=True)]

OPERATIONS = int(os.environ.get("HEARO_SOAK_OPERATIONS", "10000"))
CONCURRENCY = 6  # operations in flight at once, by distinct people
QUIET_EVERY = 500  # operations between quiet-point checks
STILL_SECONDS = 1.5  # how long nothing may change before the system counts as quiet
# After each batch the histories of visits that ended longer ago are left to the quiet points' full check.
RECENT_SECONDS = 20
# The lines (issue #13). Youth overflows into general (Korean stays Korean) well
# within a lease, general and youth give urgent customers a head start of a few
# seconds (so they land in the middle of a line), crisis the default ten
# minutes (ahead of everyone); every call ends in a short wrap-up.
QUEUES = {
    "general": {"languages": ["ko", "en"], "urgentHeadStartSeconds": 5, "wrapUpSeconds": 2},
    "youth": {
        "languages": ["ko"],
        "overflowQueueId": "general",
        "overflowAfterSeconds": 4,
        "urgentHeadStartSeconds": 10,
        "wrapUpSeconds": 1,
    },
    "crisis": {"languages": ["ko", "en"], "wrapUpSeconds": 3},
}
OVERFLOWS = {"youth": "general"}
# How joins spread over the queues, and how many are urgent in each.
JOIN_WEIGHTS = {"general": 5, "youth": 3, "crisis": 2}
URGENT_SHARE = {"general": 0.1, "youth": 0.1, "crisis": 0.5}
ENGLISH_SHARE = 0.3
# Counselor soak{n}'s skills: every line is served by two or three of them.
SKILLS = [
    {"queues": ["general", "youth"], "languages": ["ko"]},
    {"queues": ["general"], "languages": ["ko", "en"]},
    {"queues": ["crisis", "general"], "languages": ["ko", "en"]},
    {"queues": ["youth", "crisis"], "languages": ["ko"]},
    {"queues": ["general", "crisis"], "languages": ["en"]},
]
COUNSELORS = len(SKILLS)
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
    ("WAITING", "WAITING"),  # an overflow into another queue
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
    # Due by the clock (2 s after a desk's last call), and a status click renews it too: 83-203 in full runs.
    "counselor_heartbeat": 50,
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
    "urgent joins": 100,
    "overflows": 50,
    # A fifth of wrap-ups run out by themselves (tests/support/soak.py, one choice per wrap-up,
    # whatever the run's speed); the rest end with a status click.
    "wrap-ups over by themselves": 10,
    # The workers go on matching against the promoted replica (half the run comes after the kill).
    "matches made after the failover": 50,
}
# Matches each line must get in a full run: every skill is exercised.
LINE_MATCHES_AT_LEAST = 20


# Kombu's retries of a match pass sent while no primary answers: about 15 s, longer than a failover.
PASS_RETRY = {"max_retries": 60, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.25}


@dataclass(frozen=True)
class Cluster:
    ports: tuple[int, int]
    procs: list  # the nodes' and workers' processes, whose logs are read at the end
    ha: RedisHa
    broker_url: str  # sentinel://…;sentinel://…, as the servers' Celery has it


def sentinel_env(ha: RedisHa) -> dict:
    """Return the servers' settings for Redis behind ``ha``'s sentinels (the Celery broker too)."""
    broker = ";".join(f"sentinel://127.0.0.1:{port}" for port in ha.sentinel_ports)
    return {**ha.env(), "CELERY_BROKER_URL": broker}


@pytest.fixture
def cluster(tmp_path, postgres):
    """Redis behind sentinels, two Daphne nodes and two Celery workers (solo pool) on the test database."""
    need(redis_ha_available(), "redis-sentinel (apt-get install redis-sentinel)")
    with contextlib.ExitStack() as stack:
        ha = stack.enter_context(redis_ha(tmp_path))
        env = {**SERVER_ENV, **sentinel_env(ha)}
        nodes = [stack.enter_context(daphne(tmp_path, f"soak-node-{n}", **env)) for n in "ab"]
        workers = [stack.enter_context(celery_worker(tmp_path, f"soak-worker-{n}", **env)) for n in "12"]
        procs = [proc for _, proc in nodes] + workers
        try:
            yield Cluster(tuple(port for port, _ in nodes), procs, ha, env["CELERY_BROKER_URL"])
        finally:
            print_trouble(procs)


def primary_client(ha: RedisHa) -> redis.Redis:
    """Return a client of whichever server the sentinels name the primary (asked again after each error)."""
    sentinels = [("127.0.0.1", port) for port in ha.sentinel_ports]
    timeouts = {"socket_timeout": 1, "socket_connect_timeout": 1}
    return redis.sentinel.Sentinel(sentinels, sentinel_kwargs=timeouts).master_for(ha.master_name, **timeouts)


def pass_trigger(cluster: Cluster):
    """Return a function that asks the workers for a match pass through the sentinels' broker.

    The test process's own Celery app stays on its settings' broker: a
    separate app, configured as the servers' is, follows the failover.
    """
    app = Celery("soak-passes", broker=cluster.broker_url, set_as_current=False)
    app.conf.broker_transport_options = {"master_name": cluster.ha.master_name}
    return lambda: app.send_task("matching.match_pass", expires=5, retry=True, retry_policy=PASS_RETRY)


# What a failover logs at ERROR by design: Django's line for each 503 answered (the soak checks every
# answer itself), a worker's tries to reach the broker again while no primary answers, and the ack of a
# pass that ran as the primary died (the pass is redelivered after the visibility timeout: a repeated
# pass changes nothing).
FAILOVER_ERRORS = (
    " ERROR django.request Service Unavailable: ",
    " ERROR celery.worker.consumer.consumer consumer: Cannot connect to sentinel://",
    " CRITICAL celery.worker.request Couldn't ack ",
)
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d ")


def log_records(text: str) -> list[list[str]]:
    """Split a server's log into records: a timestamped line and the lines under it (a traceback)."""
    records: list[list[str]] = []
    for line in text.splitlines():
        if LOG_RECORD.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return records


def server_errors(procs) -> list[str]:
    """Return the errors the servers logged, each with its exception's last line.

    A failed matcher pass (a deadlock, say) is retried, but it is a bug.
    """
    return [
        f"{proc.log_path.name}: {record[0][:400]}" + (f"\n    ... {record[-1][:400]}" if len(record) > 1 else "")
        for proc in procs
        for record in log_records(proc.output())
        if (" ERROR " in record[0] or " CRITICAL " in record[0] or any(x.startswith("Traceback") for x in record))
        and not any(expected in record[0] for expected in FAILOVER_ERRORS)
    ]


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
    # In time across every line: the planner lets customers in the back half vanish.
    waiting = registrations.filter(status="WAITING").order_by("virtual_arrival", "id")
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


def joined_queue(queue_id: str, overflowed: bool) -> str:
    """Return the queue a visit joined: where it is, or the queue that overflowed into it (one step here)."""
    return {target: source for source, target in OVERFLOWS.items()}[queue_id] if overflowed else queue_id


@dataclass(frozen=True)
class Routing:
    """What the soak configured, as the database holds it: each queue's head start, each counselor's skills."""

    head_start: dict[str, int]
    skills: dict[int, tuple[frozenset[str], frozenset[str]]]  # counselor pk -> (queues, languages)

    def serves(self, counselor_pk: int, line: tuple[str, str]) -> bool:
        queues, languages = self.skills[counselor_pk]
        return line[0] in queues and line[1] in languages


def routing_read() -> Routing:
    """Read the configuration once (it does not change during the run): the checks after each batch stay cheap."""
    queues: dict[int, set[str]] = {}
    for pk, queue_id in Counselor.queues.through.objects.values_list("counselor_id", "queue_id"):
        queues.setdefault(pk, set()).add(queue_id)
    return Routing(
        head_start=dict(Queue.objects.values_list("queue_id", "urgent_head_start_seconds")),
        skills={
            pk: (frozenset(queues.get(pk, ())), frozenset(languages or ()))
            for pk, languages in Counselor.objects.values_list("id", "languages")
        },
    )


def order_problems(routing: Routing) -> tuple[list[str], dict[int, tuple[str, str]], dict[int, tuple[str, int]]]:
    """Recompute each active visit's virtual arrival and each line's order.

    Virtual arrival = the join time, less the joined queue's head start if
    urgent (kept by requeues and overflows); rank = 1 + the WAITING visits of
    the same queue and language ahead in (virtual arrival, id) order. The
    recomputed lines must be the ones the rank hub reads (``queue_order``).
    Return the problems, each active visit's line and each WAITING visit's
    (queue, recomputed rank).
    """
    overflowed = Exists(RegistrationEvent.objects.filter(registration=OuterRef("pk"), reason="overflow"))
    fields = ("id", "status", "queue_id", "language", "urgent", "enqueued_at", "virtual_arrival", "overflowed")
    active = Registration.objects.filter(status__in=ACTIVE).annotate(overflowed=overflowed).values_list(*fields)
    problems, visits, lines = [], {}, {}
    for reg_id, status, queue_id, language, urgent, enqueued_at, stored, moved in active:
        joined = joined_queue(queue_id, moved)
        arrival = enqueued_at - timedelta(seconds=routing.head_start[joined] if urgent else 0)
        if stored != arrival:
            problems.append(f"visit {reg_id} ({joined}, urgent={urgent}): virtual arrival {stored}, expected {arrival}")
        visits[reg_id] = (queue_id, language)
        if status == "WAITING":
            lines.setdefault((queue_id, language), []).append((arrival, reg_id))
    expected = {line: [reg_id for _, reg_id in sorted(waiting)] for line, waiting in lines.items()}
    read = queue_order().lines
    problems += [
        f"line {line}: the hub reads {read.get(line, [])[:8]}…, recomputed {expected.get(line, [])[:8]}…"
        for line in set(read) | set(expected)
        if read.get(line, []) != expected.get(line, [])
    ]
    ranks = {reg_id: (line[0], n) for line, ids in expected.items() for n, reg_id in enumerate(ids, start=1)}
    return problems, visits, ranks


def skill_problems(view: View, visits: dict[int, tuple[str, str]], routing: Routing) -> list[str]:
    """Each open match pairs a counselor with a visit of a line it serves (a matched visit does not move)."""
    return [
        f"match {m.id}: counselor {m.counselor_pk} {routing.skills[m.counselor_pk]} got visit {m.registration_id} "
        f"of {visits[m.registration_id]}"
        for m in view.matches
        if not routing.serves(m.counselor_pk, visits[m.registration_id])
    ]


def every_match_skill_problems(routing: Routing) -> list[str]:
    """Every match ever made paired a counselor with a visit of a line it served then."""
    overflowed_at = dict(RegistrationEvent.objects.filter(reason="overflow").values_list("registration_id", "at"))
    fields = ("id", "counselor_id", "created_at", "registration_id", "registration__queue_id", "registration__language")
    problems = []
    for match_id, pk, made_at, reg_id, queue_id, language in Match.objects.values_list(*fields):
        # A visit requeued after this match may have overflowed since (keeping Korean): the line it had then.
        line = (joined_queue(queue_id, overflowed_at.get(reg_id, made_at) > made_at), language)
        if not routing.serves(pk, line):
            problems.append(f"match {match_id}: counselor {pk} {routing.skills[pk]} got visit {reg_id} of {line}")
    return problems


def registration_problems(soak: Soak, *, full: bool) -> list[str]:
    """No lost or duplicated visit: one per successful join, and (in full) each the soak holds is its customer's."""
    joined, visits = soak.outcomes[("join", "ok")], Registration.objects.count()
    problems = [f"{joined} joins succeeded but {visits} visits exist"] if joined != visits else []
    if not full:
        return problems
    owners = dict(Registration.objects.filter(id__in=soak.by_registration()).values_list("id", "customer__customer_id"))
    return problems + [
        f"customer {c.customer_id}'s visit {c.registration_id} is {owners.get(c.registration_id, 'missing')}"
        for c in soak.customers
        if owners.get(c.registration_id) != c.customer_id
    ]


def checked_view(soak: Soak, routing: Routing, *, full: bool = False) -> tuple[View, list[str]]:
    """Return the planner's view and every broken invariant, from one snapshot."""
    with snapshot():
        view = read_view()
        since = None if full else timezone.now() - timedelta(seconds=RECENT_SECONDS)
        problems = pairing_problems(view) + history_problems(since=since) + counselor_history_problems(full=full)
        order, visits, _ = order_problems(routing)
        problems += order + skill_problems(view, visits, routing) + registration_problems(soak, full=full)
        if full:
            problems += every_match_skill_problems(routing)
    return view, problems


# --- what the pages show --------------------------------------------------------------


def page_problems(
    pages: list[RankPage], view: View, statuses: dict[int, str], ranks: dict[int, tuple[str, int]]
) -> tuple[dict[int, str], int]:
    """Compare pages with the truth; return the mismatches by visit and how many waiting ranks were right.

    ``ranks``: each WAITING visit's queue and its rank recomputed from virtual arrival.
    """
    open_match = {m.registration_id: m.id for m in view.matches}
    problems, right = {}, 0
    for page in pages:
        registration, shown = page.registration_id, page.shown or {}
        status = statuses[registration]
        if page.problem:
            problems[registration] = page.problem
        elif shown.get("status") != status:
            problems[registration] = f"shows {shown.get('status')} but the visit is {status}"
        elif status == "WAITING" and (shown.get("queueId"), shown["rank"]) != ranks[registration]:
            queue_id, rank = ranks[registration]
            problems[registration] = (
                f"shows rank {shown['rank']} in {shown.get('queueId')}, true rank {rank} in {queue_id}"
            )
        elif status in ("MATCHED", "IN_CALL") and shown.get("matchId") != open_match[registration]:
            problems[registration] = f"shows match {shown.get('matchId')}, the open one is {open_match[registration]}"
        else:
            right += status == "WAITING"
    return problems, right


def statuses_of(pages: list[RankPage]) -> dict[int, str]:
    ids = [page.registration_id for page in pages]
    return dict(Registration.objects.filter(id__in=ids).values_list("id", "status"))


def passes_queued(broker: redis.Redis) -> bool:
    """Return whether match passes wait in the broker's queue (or the broker cannot say: no primary yet).

    Not the "unacked" hash: a worker killed by an earlier test leaves entries
    there for an hour. A pass a worker already reserved runs within the
    stillness window, and one that changes nothing cannot hide a wrong page.
    """
    try:
        return broker.llen("celery") > 0
    except redis.RedisError:
        return True  # mid-failover: nothing counts as still until the queue can be read


def settle_and_compare(
    soak: Soak, routing: Routing, pool: ThreadPoolExecutor, broker: redis.Redis, timeout: float = 30
) -> int:
    """Stop operating, keep the live pages beating, wait until nothing moves, then compare every page.

    Return how many waiting ranks were compared.
    """
    soak.trigger_pass()  # the last word on overdue leases and deadlines
    deadline = time.monotonic() + timeout
    signature, still_since = None, time.monotonic()
    while True:
        pages = [c.page for c in soak.with_pages()]
        with snapshot():
            view, statuses, (*_, ranks) = read_view(), statuses_of(pages), order_problems(routing)
        surprises = soak.record(list(pool.map(Op.run, soak.keep_alive(view))), count=False)
        assert not surprises, f"seed {soak.seed}, keeping pages alive:\n" + "\n".join(surprises)
        now = (view.version, frozenset(view.registrations.items()), frozenset(view.matches))
        queued = passes_queued(broker)
        if now != signature or queued:
            signature, still_since = now, time.monotonic()
        problems, compared = page_problems(pages, view, statuses, ranks)
        if not problems and time.monotonic() - still_since >= STILL_SECONDS:
            return compared
        if time.monotonic() > deadline and not problems:
            # Every page is right, but something keeps moving, or no worker takes the passes queued.
            pytest.fail(f"seed {soak.seed}: never still for {STILL_SECONDS} s (match passes still queued: {queued})")
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
    problems, _ = page_problems(pages, view, statuses_of(pages), ranks={})  # ended visits: no rank
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
            shown = ("status", "queueId", "rank", "version", "matchId", "reason", "timestamp")
            fields = {k: body[k] for k in shown if k in body}
            lines.append(f"  {'shown  ' if accepted else 'dropped'} {fields}")
    return "\n".join(lines)


# --- the soak ---------------------------------------------------------------------------


def lines_configure() -> None:
    """Configure the queues through the staff service (general exists after migrate; a flush lost it)."""
    queue_default()
    staff.queue_update(queue_id="general", body=QUEUES["general"], actor="soak")
    for queue_id in ("crisis", "youth"):
        body = {"queueId": queue_id, "name": {"ko": queue_id, "en": queue_id}, **QUEUES[queue_id]}
        staff.queue_create(body=body, actor="soak")


def join_body(rng: random.Random) -> dict:
    """Draw what a customer asks for: now and then nothing (the default queue), else a queue, language and urgency."""
    if rng.random() < 0.1:
        return {}
    queue_id = rng.choices(list(JOIN_WEIGHTS), list(JOIN_WEIGHTS.values()))[0]
    english = "en" in QUEUES[queue_id]["languages"] and rng.random() < ENGLISH_SHARE
    return {"queueId": queue_id, "language": "en" if english else "ko", "urgent": rng.random() < URGENT_SHARE[queue_id]}


def desks_on_shift(ports: tuple[int, int]) -> list[Desk]:
    """Create the counselors with their skills, each AVAILABLE through the API."""
    desks = []
    for n in range(COUNSELORS):
        counselor, key = counselor_with_token(f"soak{n}")
        counselor_skills_set(counselor_id=counselor.counselor_id, body=SKILLS[n], actor="soak")
        status, body = http(ports[n % 2], "POST", "/api/counselor/status", key=key, body={"status": "AVAILABLE"})
        assert status == 200, body
        desks.append(Desk(counselor.pk, counselor.counselor_id, key, beat_at=time.monotonic()))
    return desks


def checked(soak: Soak, routing: Routing, done: int, *, full: bool = False) -> View:
    """Return the planner's view after failing on any broken invariant."""
    started = time.monotonic()
    view, problems = checked_view(soak, routing, full=full)
    soak.seconds["checking the invariants"] += time.monotonic() - started  # kept in sight: the run's length
    assert not problems, f"seed {soak.seed}, after {done} operations:\n" + "\n".join(problems[:20])
    return view


def kill_after() -> int:
    """Return after how many operations the primary dies: half-way, between two quiet points.

    Not at one: operations must go on through the failover before the soak
    next stops to let everything settle.
    """
    between = (OPERATIONS // 2 // QUIET_EVERY) * QUIET_EVERY + QUIET_EVERY // 2
    return between if between < OPERATIONS else OPERATIONS // 2


@dataclass
class Failover:
    """When the primary dies, and the wait for its successor on a thread of its own (operations go on)."""

    ha: RedisHa
    after: int  # operations done before the kill
    waiting: ThreadPoolExecutor
    promoted: Future | None = None

    def due(self, soak: Soak, done: int, planned: int) -> bool:
        return soak.gap is None and done + planned > self.after

    def start(self, soak: Soak) -> None:
        """SIGKILL the primary now (a batch is in flight) and start waiting for a replica's promotion."""
        killed_at, killed_wall = time.monotonic(), time.time()
        soak.gap = Gap(killed_at, self.ha.kill_primary(), killed_wall)
        self.promoted = self.waiting.submit(soak.gap.promote, lambda old: self.ha.wait_promoted(old, 60))

    def close(self, soak: Soak) -> None:
        """End the gap: a quiet point after the kill found everything right, so Redis is back for good."""
        if soak.gap is not None and soak.gap.open:
            self.promoted.result()  # raises if no replica was promoted
            soak.gap.open = False


def run_batch(soak: Soak, ops: list[Op], pool: ThreadPoolExecutor, failover: Failover, done: int) -> list[str]:
    """Run one batch concurrently (killing the primary meanwhile if it is due); return the surprises."""
    running = [pool.submit(op.run) for op in ops]
    if failover.due(soak, done, len(ops)):
        failover.start(soak)
    return soak.record([future.result() for future in running])


def soak_run(soak: Soak, routing: Routing, pool: ThreadPoolExecutor, broker: redis.Redis, failover: Failover) -> int:
    """Run every operation, batch by batch, checking after each; return how many waiting ranks were compared."""
    done, compared, quiet_at = 0, 0, QUIET_EVERY
    while True:
        view = checked(soak, routing, done)
        if done >= min(quiet_at, OPERATIONS):
            compared += settle_and_compare(soak, routing, pool, broker)
            view = checked(soak, routing, done, full=True)
            failover.close(soak)
            quiet_at += QUIET_EVERY
        retire_pages(soak, view)
        if done >= OPERATIONS:
            return compared
        ops = soak.plan(view, min(CONCURRENCY, OPERATIONS - done))
        surprises = run_batch(soak, ops, pool, failover, done)
        assert not surprises, f"seed {soak.seed}, after {done} operations:\n" + "\n".join(surprises)
        done += len(ops)


def test_ten_thousand_random_operations_keep_every_invariant_through_a_failover(cluster):
    seed = int(os.environ.get("HEARO_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"soak seed {seed} (HEARO_SOAK_SEED={seed} repeats its random draws)")
    lines_configure()
    soak = Soak(
        ports=cluster.ports,
        rng=random.Random(seed),
        desks=desks_on_shift(cluster.ports),
        trigger_pass=pass_trigger(cluster),
        seed=seed,
        join_body=join_body,
    )
    routing = routing_read()
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool, ThreadPoolExecutor(1) as waiting:
        failover = Failover(cluster.ha, kill_after(), waiting)
        try:
            compared = soak_run(soak, routing, pool, primary_client(cluster.ha), failover)
        finally:
            soak.close_pages()
    report(soak, time.monotonic() - started, compared)
    problems = after_the_run_problems(soak, cluster.procs)
    assert not problems, f"seed {seed}:\n" + "\n".join(problems)


def after_the_run_problems(soak: Soak, procs) -> list[str]:
    """Return what went wrong without stopping the run: refusals without Retry-After, dead servers, logged errors."""
    problems = [f"503 answers without a Retry-After header: {dict(soak.gap.without_retry_after)}"]
    problems = problems if soak.gap.without_retry_after else []
    problems += [f"{p.log_path.name} exited with {p.proc.returncode}" for p in procs if p.proc.poll() is not None]
    errors = server_errors(procs)
    if errors:
        problems.append(f"the servers logged {len(errors)} errors, the first ones:\n" + "\n".join(errors[:10]))
    return problems


def killed_at(soak: Soak) -> datetime:
    return datetime.fromtimestamp(soak.gap.killed_wall, tz=UTC)


def report(soak: Soak, seconds: float, compared: int) -> None:
    """Print what the run did and prove it did enough of everything to mean something."""
    assert soak.gap is not None and not soak.gap.open, "the run ended before its failover was over"
    visits = Counter(RegistrationEvent.objects.values_list("reason", flat=True))
    ends = Counter(Match.objects.values_list("end_reason", flat=True))
    desks = Counter(CounselorEvent.objects.values_list("reason", flat=True))
    print(f"soak seed {soak.seed}: {sum(soak.kinds.values())} operations in {seconds:.0f} s")
    print(f"  operations {dict(soak.kinds)}")
    print(f"  answers {dict(soak.outcomes)}")
    means = {kind: round(soak.seconds[kind] / n, 3) for kind, n in soak.kinds.items()}
    print(f"  mean seconds per operation {means}")
    print(f"  seconds checking the invariants {soak.seconds['checking the invariants']:.0f}")
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
        "urgent joins": Registration.objects.filter(urgent=True).count(),
        "overflows": visits["overflow"],
        "wrap-ups over by themselves": desks["wrap_up_over"],
        "matches made after the failover": Match.objects.filter(created_at__gte=killed_at(soak)).count(),
    }
    print(f"  {happened}")
    lines = Counter(Match.objects.values_list("registration__queue_id", "registration__language"))
    print(f"  matches by the visit's line now {dict(lines)}")
    print(f"  failover: {soak.gap.summary()}")
    pages, times, tries = soak.page_reconnects()
    print(f"  pages that opened their socket again: {pages} ({times} times); failed tries to open one: {tries}")
    if OPERATIONS < 10_000:
        return  # a quick try: leases and deadlines need the full run's minutes
    short = {kind: soak.kinds[kind] for kind, least in AT_LEAST.items() if soak.kinds[kind] < least}
    assert not short, f"seed {soak.seed}: too few operations of some kinds: {short}"
    rare = {what: n for what, n in happened.items() if n < HAPPENED_AT_LEAST[what]}
    assert not rare, f"seed {soak.seed}: too little of some outcomes: {rare}"
    served = {(q, lang) for q, config in QUEUES.items() for lang in config["languages"]}
    idle = {line: lines[line] for line in served if lines[line] < LINE_MATCHES_AT_LEAST}
    assert not idle, f"seed {soak.seed}: lines matched too rarely: {idle}"
