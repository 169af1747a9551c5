"""The soak's pieces: HTTP and STOMP clients, the simulated people, and the random operations.

The test process plays every customer and counselor at once. Each batch of
operations is planned on the main thread from one database snapshot, with
the seeded RNG (a seed repeats the random draws; what they act on still
depends on timing), and then run concurrently over HTTP against both nodes;
the Celery workers match on their own in between.
"""

import contextlib
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed, WebSocketException

from tests.support.stomp_ws import StompWs

ACTIVE = ("WAITING", "MATCHED", "IN_CALL")
# On a lease, so their dashboards heart-beat (WRAP_UP too: matching.counselors.ON_LEASE).
ON_SHIFT = ("AVAILABLE", "AWAY", "BUSY", "WRAP_UP")
# The share of wrap-ups a counselor ends with a status click (the rest run out by themselves):
# most, so desks come back about as fast as when every look could click (the run's mix of
# calls, waits and heartbeats stays where the floors in tests/test_soak.py were set).
WRAP_UP_CLICKED = 0.8
# How often each kind is tried; a kind with nothing to act on gives way to another.
WEIGHTS = {
    "join": 12,
    "heartbeat": 24,
    "counselor_heartbeat": 6,
    "cancel": 2,
    "status": 5,
    "match": 3,
    "join_confirm": 24,
    "complete": 12,
    "timeout": 1.25,
}
# Draws per slot of a batch: a kind with nothing to do rarely hands its slot to the always-possible ones.
DRAWS = 3
# Error codes each kind may legitimately meet: the state moved between plan and request.
EXPECTED = {
    "join": set(),
    "heartbeat": {"not_active"},
    "counselor_heartbeat": {"not_on_shift"},
    "cancel": {"not_cancellable", "retry"},
    "status": {"counselor_busy", "status_conflict"},
    "join_confirm": {"match_ended"},
    "complete": {"match_ended", "not_in_call"},
}
MAX_ACTIVE_CUSTOMERS = 40
MAX_PAGES = 24  # customers subscribed over STOMP at once (each a socket and a thread)
MAX_GHOST_DESKS = 2
# The kinds that always reach Redis (the lease cache, the join's rate limit and publish): the first
# of them to succeed after the primary died marks when the nodes were back.
REDIS_KINDS = ("join", "heartbeat")
# How long a page keeps trying to (re)connect while Redis fails over, and its pause between tries.
PAGE_RETRY_SECONDS, PAGE_RETRY_PAUSE = 30.0, 0.5


def http(port: int, method: str, path: str, *, bearer: str = "", key: str = "", body: dict | None = None):
    """Call a node; return (status, JSON body), or (status, {"error": "<not json>", ...}) for anything else."""
    status, answer, _ = request(port, method, path, bearer=bearer, key=key, body=body)
    return status, answer


def request(port: int, method: str, path: str, *, bearer: str = "", key: str = "", body: dict | None = None):
    """Call a node; return (status, JSON body, headers) as ``http`` does."""
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    call.add_header("Content-Type", "application/json")
    if bearer:
        call.add_header("Authorization", f"Bearer {bearer}")
    elif key:
        call.add_header("Authorization", f"Token {key}")
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            status, raw, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, headers = error.code, error.read(), dict(error.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, {"error": "<not json>", "detail": raw[:300].decode(errors="replace")}, headers


class PageRefused(Exception):
    """The node answered CONNECT with something else than CONNECTED."""


class RankPage:
    """A customer's page: the rank topic over STOMP, read on a thread, stale versions dropped.

    It accepts messages as ``hearo-client.js`` does: the snapshot after each
    (re)connect always, later WAITING ones only if no older than the newest
    version seen, everything else as it comes. While ``may_retry()`` holds (Redis
    is failing over) a refused or closed socket is opened again, as the page
    does, and counted in ``reconnects``; otherwise it is the page's problem.
    """

    def __init__(
        self,
        port: int,
        customer_id: str,
        token: str,
        registration_id: int,
        may_retry: Callable[[], bool] = lambda: False,
    ) -> None:
        self.registration_id = registration_id
        self.shown: dict | None = None
        self.received: list[tuple[bool, dict]] = []  # (accepted, body), for the failure report
        self.problem = ""
        self.gone_since: float | None = None  # when the planner first saw the visit ended
        self.reconnects = 0  # sockets opened again after the server closed or refused one
        self.retried_opens = 0  # tries to open a socket that failed while Redis failed over
        self._address = (port, customer_id, token)
        self._may_retry = may_retry
        self._version = -1
        self._snapshot_due = True
        self._closing = False
        self._stomp = self._open()
        self._thread = threading.Thread(target=self._read, name=f"rank-{registration_id}", daemon=True)
        self._thread.start()

    def _open(self) -> StompWs:
        """Connect and subscribe; while Redis fails over, try again for a while as the page does."""
        deadline = time.monotonic() + PAGE_RETRY_SECONDS
        while True:
            try:
                return self._try_open()
            except (OSError, WebSocketException, PageRefused) as exc:
                if not self._may_retry() or time.monotonic() > deadline:
                    raise AssertionError(f"page of visit {self.registration_id} could not connect: {exc!r}") from exc
                self.retried_opens += 1
                time.sleep(PAGE_RETRY_PAUSE)

    def _try_open(self) -> StompWs:
        port, customer_id, token = self._address
        stomp = StompWs(port)
        connected = stomp.connect_customer(token)
        if connected.command != "CONNECTED":
            stomp.close()
            raise PageRefused(f"STOMP CONNECT refused: {connected}")
        stomp.subscribe(f"/topic/queue-rank/{customer_id}")
        return stomp

    def _read(self) -> None:
        while not self._closing:
            try:
                frame = self._stomp.frame(timeout=None)
            except ConnectionClosed:
                if self._closing or not self._reopen("the server closed the socket"):
                    return
                continue
            if frame.command != "MESSAGE":
                if not self._reopen(f"unexpected {frame.command}: {frame.headers} {frame.body!r}"):
                    return
                continue
            self._show(json.loads(frame.body))

    def _reopen(self, problem: str) -> bool:
        """Open the socket again if Redis is failing over; else record ``problem``. Return whether reopened."""
        if not self._may_retry():
            self.problem = problem
            return False
        with contextlib.suppress(Exception):
            self._stomp.close()
        try:
            self._stomp = self._open()
        except AssertionError as exc:
            self.problem = f"{problem}; then {exc}"
            return False
        self.reconnects += 1
        self._snapshot_due = True  # the new subscription's snapshot is the truth, as after the first
        if self._closing:
            self._stomp.close()  # close() ran meanwhile, on the socket this one replaced
        return True

    def _show(self, body: dict) -> None:
        accepted = self._accepts(body)
        self.received.append((accepted, body))
        if accepted:
            self.shown = body

    def _accepts(self, body: dict) -> bool:
        if body.get("registrationId") != self.registration_id:
            return False  # the same customer's later visit: another page's business
        snapshot, self._snapshot_due = self._snapshot_due, False
        if body.get("status") == "WAITING":
            if not snapshot and body["version"] < self._version:
                return False
            self._version = body["version"]
        return True

    def wait_for_snapshot(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.shown is None and not self.problem:
            if time.monotonic() > deadline:
                raise AssertionError(f"no snapshot after subscribing (registration {self.registration_id})")
            time.sleep(0.01)

    def close(self) -> None:
        self._closing = True
        self._stomp.close()
        self._thread.join(timeout=5)


@dataclass(eq=False)
class Customer:
    customer_id: str
    token: str
    registration_id: int
    beat_at: float
    # A ghost stopped answering: no heartbeats, no join confirmation, no cancel
    # (its page, if any, stays open). Its lease or the join deadline ends the
    # visit; it may come back later as a new visit.
    ghost: bool = False
    page: RankPage | None = None


@dataclass(eq=False)
class Desk:
    """A counselor's dashboard."""

    pk: int
    counselor_id: str
    key: str
    beat_at: float = 0.0
    ghost: bool = False  # stopped heart-beating and answering; the matcher takes it off shift
    ends_wrap_up: bool | None = None  # this wrap-up's choice: end it with a click, or let it run out


@dataclass(frozen=True)
class OpenMatch:
    id: int
    registration_id: int
    counselor_pk: int
    customer_joined: bool
    counselor_joined: bool


@dataclass
class View:
    """What the planner sees of the database: one consistent snapshot."""

    registrations: dict[int, tuple[int, str]]  # active registration id -> (customer pk, status)
    matches: list[OpenMatch]
    counselors: dict[int, str]  # counselor pk -> status
    waiting: list[int]  # WAITING registration ids in rank order
    version: int


@dataclass
class Outcome:
    kind: str
    code: str = "ok"  # "ok" or the REST error code
    status: int = 200
    detail: str = ""
    joined: Customer | None = None  # a first-time customer to remember
    retry_after: str = ""  # a refusal's Retry-After header
    started: float = 0.0  # monotonic
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def refused(kind: str, status: int, body: dict, headers: dict) -> Outcome:
    """Return the outcome of a request the node refused, with its error code and Retry-After."""
    retry_after = next((value for name, value in headers.items() if name.lower() == "retry-after"), "")
    detail = json.dumps(body)[:300]
    return Outcome(kind, code=body.get("error", "?"), status=status, detail=detail, retry_after=retry_after)


@dataclass
class Op:
    kind: str
    actor: object
    action: Callable[[], Outcome]

    def run(self) -> Outcome:
        started = time.monotonic()
        outcome = self.action()
        outcome.started, outcome.finished = started, time.monotonic()
        return outcome


@dataclass
class Gap:
    """A Redis failover the soak lives through: its timeline and what the operations met in it.

    Times are monotonic. The gap stays open from the kill until a quiet point
    after it finds every page right: until then a 503 ``unavailable`` with a
    Retry-After is an answer the soak accepts, and a page whose socket the
    node closed or refused opens it again.
    """

    killed_at: float
    killed_port: int
    killed_wall: float  # time.time(), to compare with the database's timestamps
    promoted_at: float | None = None
    promoted_port: int | None = None
    open: bool = True
    unavailable: Counter = field(default_factory=Counter)  # accepted 503s by kind
    # ...of which without a Retry-After header: the soak goes on, and fails at the end.
    without_retry_after: Counter = field(default_factory=Counter)
    last_unavailable_at: float | None = None
    recovered_at: float | None = None  # when the first REDIS_KINDS operation begun after the kill succeeded

    def promote(self, wait_promoted: Callable[[int], int]) -> None:
        """Wait (on a thread of its own: operations go on) until a replica is promoted."""
        self.promoted_port = wait_promoted(self.killed_port)
        self.promoted_at = time.monotonic()

    def accepts(self, outcome: Outcome) -> bool:
        """Return whether ``outcome`` is a 503 ``unavailable`` met in the gap (and count it)."""
        in_gap = self.open and outcome.finished >= self.killed_at
        if not (in_gap and outcome.code == "unavailable" and outcome.status == 503):
            return False
        self.unavailable[outcome.kind] += 1
        if not outcome.retry_after:
            self.without_retry_after[outcome.kind] += 1
        self.last_unavailable_at = max(self.last_unavailable_at or 0.0, outcome.finished)
        return True

    def note(self, outcome: Outcome) -> None:
        if outcome.code == "ok" and outcome.kind in REDIS_KINDS and outcome.started >= self.killed_at:
            self.recovered_at = min(self.recovered_at or outcome.finished, outcome.finished)

    def summary(self) -> str:
        def since_kill(at: float | None) -> str:
            return "never" if at is None else f"+{at - self.killed_at:.2f} s"

        return (
            f"primary {self.killed_port} SIGKILLed; {self.promoted_port} promoted {since_kill(self.promoted_at)}; "
            f"first {'/'.join(REDIS_KINDS)} begun after the kill succeeded {since_kill(self.recovered_at)}; "
            f"503 unavailable answers {dict(self.unavailable)} (the last {since_kill(self.last_unavailable_at)}), "
            f"of which without Retry-After {dict(self.without_retry_after)}"
        )


@dataclass
class Soak:
    """Every simulated person and the operations they take, with the seeded RNG that picks them."""

    ports: tuple[int, int]
    rng: random.Random
    desks: list[Desk]
    trigger_pass: Callable[[], None]
    customers: list[Customer] = field(default_factory=list)
    seed: int = 0
    kinds: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    # The body of a join (queueId, language, urgent), drawn on the main thread; by default {}: the default queue.
    join_body: Callable[[random.Random], dict] = field(default=lambda rng: {})
    gap: Gap | None = None  # the Redis failover, once it began
    pages: list[RankPage] = field(default_factory=list)  # every page ever opened, for their reconnect counts

    def in_gap(self) -> bool:
        return self.gap is not None and self.gap.open

    def port(self) -> int:
        return self.rng.choice(self.ports)

    def by_registration(self) -> dict[int, Customer]:
        return {c.registration_id: c for c in self.customers}

    def with_pages(self) -> list[Customer]:
        return [c for c in self.customers if c.page is not None]

    def close_pages(self) -> None:
        for customer in self.with_pages():
            customer.page.close()
            customer.page = None

    # -- planning ----------------------------------------------------------------

    def plan(self, view: View, size: int) -> list[Op]:
        """Pick up to ``size`` operations for distinct people (a person does one thing at a time)."""
        used: set = set()
        ops: list[Op] = []
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        for _ in range(size):
            for kind in self.rng.choices(kinds, weights, k=DRAWS):
                op = getattr(self, f"_plan_{kind}")(view, used)
                if op is not None:
                    used.add(op.actor)
                    ops.append(op)
                    break
        return ops

    def _free(self, people, used: set) -> list:
        return [p for p in people if p not in used]

    def _plan_join(self, view: View, used: set) -> Op | None:
        if len(view.registrations) >= MAX_ACTIVE_CUSTOMERS:
            return None
        gone = self._free((c for c in self.customers if c.registration_id not in view.registrations), used)
        returning = self.rng.choice(gone) if gone and self.rng.random() < 0.3 else None
        with_page = len(self.with_pages()) < MAX_PAGES and self.rng.random() < 0.5
        port, page_port = self.port(), self.port()
        actor, body = returning or object(), self.join_body(self.rng)
        return Op("join", actor, lambda: self._join(returning, port, page_port if with_page else 0, body))

    def _plan_heartbeat(self, view: View, used: set) -> Op | None:
        live = self._free((c for c in self.customers if c.registration_id in view.registrations and not c.ghost), used)
        if not live:
            return None
        # The stalest first, as every page beats on its own clock.
        customer = min(live, key=lambda c: c.beat_at)
        if time.monotonic() - customer.beat_at < 1.0:
            return None  # everyone beat a moment ago
        port = self.port()
        return Op("heartbeat", customer, lambda: self._heartbeat(customer, port))

    def _plan_counselor_heartbeat(self, view: View, used: set) -> Op | None:
        on_shift = self._free((d for d in self.desks if view.counselors[d.pk] in ON_SHIFT and not d.ghost), used)
        if not on_shift:
            return None
        desk = min(on_shift, key=lambda d: d.beat_at)
        if time.monotonic() - desk.beat_at < 2.0:
            return None
        port = self.port()
        return Op("counselor_heartbeat", desk, lambda: self._counselor_heartbeat(desk, port))

    def _plan_cancel(self, view: View, used: set) -> Op | None:
        live = self._free((c for c in self.customers if c.registration_id in view.registrations and not c.ghost), used)
        if not live:
            return None
        customer, port = self.rng.choice(live), self.port()
        return Op("cancel", customer, lambda: self._call("cancel", port, "/api/queue/cancel", bearer=customer.token))

    def _plan_status(self, view: View, used: set) -> Op | None:
        # Ghosts come back to work once the matcher has taken them off shift.
        desks = self._free((d for d in self.desks if not d.ghost or view.counselors[d.pk] == "OFFLINE"), used)
        # One in wrap-up mostly ends it with a click and now and then lets it run out (a real
        # counselor writing notes): one choice per wrap-up, so the share holds however fast the run goes.
        idle = [d for d in desks if view.counselors[d.pk] != "BUSY" and self._may_end_wrap_up(d, view.counselors[d.pk])]
        # Mostly a counselor who can change; now and then one in a call (refused).
        pool = idle if self.rng.random() < 0.97 else desks
        if not pool:
            return None
        desk = self.rng.choice(pool)
        status = self._next_status(view.counselors[desk.pk])
        desk.ghost = False
        port = self.port()
        return Op("status", desk, lambda: self._status(desk, port, status))

    def _may_end_wrap_up(self, desk: Desk, now: str) -> bool:
        """Whether a status click may land on this desk now: once per wrap-up, not per look.

        A coin per look let a fast run (more looks per wrap-up) end nearly every wrap-up early:
        a CI run of 10,000 operations in 204 s saw 5 of 177 run out (a coin of 0.3 per look).
        """
        if now != "WRAP_UP":
            desk.ends_wrap_up = None  # the next wrap-up draws again
            return True
        if desk.ends_wrap_up is None:
            desk.ends_wrap_up = self.rng.random() < WRAP_UP_CLICKED
        return desk.ends_wrap_up

    def _next_status(self, now: str) -> str:
        if now == "AVAILABLE":
            return self.rng.choices(["AWAY", "OFFLINE", "AVAILABLE"], [6, 2, 2])[0]
        if now == "BUSY":
            return self.rng.choice(["AVAILABLE", "AWAY"])  # refused: finish the match first
        return self.rng.choices(["AVAILABLE", "AWAY", "OFFLINE"], [8, 1, 1])[0]

    def _plan_match(self, view: View, used: set) -> Op | None:
        return Op("match", object(), self._match)

    def _plan_join_confirm(self, view: View, used: set) -> Op | None:
        customers, desks = self.by_registration(), {d.pk: d for d in self.desks}
        sides = []
        for match in view.matches:
            customer, desk = customers.get(match.registration_id), desks[match.counselor_pk]
            if not match.customer_joined and customer and not customer.ghost and customer not in used:
                sides.append((match, customer, {"bearer": customer.token}))
            if not match.counselor_joined and not desk.ghost and desk not in used:
                sides.append((match, desk, {"key": desk.key}))
        if not sides:
            return None
        # Mostly the longest-waiting side, as people answer in turn, sometimes anyone.
        match, actor, auth = sides[0] if self.rng.random() < 0.5 else self.rng.choice(sides)
        path, port = f"/api/matches/{match.id}/joined", self.port()
        return Op("join_confirm", actor, lambda: self._call("join_confirm", port, path, **auth))

    def _plan_complete(self, view: View, used: set) -> Op | None:
        desks = {d.pk: d for d in self.desks}
        in_call = [
            m
            for m in view.matches
            if view.registrations[m.registration_id][1] == "IN_CALL"
            and not desks[m.counselor_pk].ghost
            and desks[m.counselor_pk] not in used
        ]
        if not in_call:
            return None
        match, port = self.rng.choice(in_call), self.port()
        desk = desks[match.counselor_pk]
        path = f"/api/matches/{match.id}/complete"
        return Op("complete", desk, lambda: self._call("complete", port, path, key=desk.key))

    def _plan_timeout(self, view: View, used: set) -> Op | None:
        """Let someone vanish, so a lease or a join deadline runs out later in the run."""
        roll = self.rng.random()
        if roll < 0.3:
            if sum(d.ghost for d in self.desks) >= MAX_GHOST_DESKS:
                return None  # keep enough counselors to match with
            people = [d for d in self.desks if not d.ghost and view.counselors[d.pk] in ON_SHIFT]
        elif roll < 0.7:
            # From the back half of the queue: its lease runs out before a match would come.
            back = set(view.waiting[len(view.waiting) // 2 :])
            people = [c for c in self.customers if c.registration_id in back and not c.ghost]
        else:
            matched = {r for r, (_, status) in view.registrations.items() if status == "MATCHED"}
            people = [c for c in self.customers if c.registration_id in matched and not c.ghost]
        people = self._free(people, used)
        if not people:
            return None
        person = self.rng.choice(people)
        person.ghost = True  # planned on the main thread: the next plan already sees it
        return Op("timeout", person, lambda: Outcome("timeout"))

    # -- running (on the pool's threads; each touches only its own person) ------------

    def _call(self, kind: str, port: int, path: str, **auth) -> Outcome:
        status, body, headers = request(port, "POST", path, **auth)
        if status < 300:
            return Outcome(kind, status=status)
        return refused(kind, status, body, headers)

    def _join(self, returning: Customer | None, port: int, page_port: int, asked: dict | None = None) -> Outcome:
        if returning and returning.page:
            returning.page.close()  # the old page: its socket speaks for the ended visit
            returning.page = None
        bearer = returning.token if returning else ""
        status, body, headers = request(port, "POST", "/api/queue/join", bearer=bearer, body=asked or {})
        if status not in (200, 201):
            return refused("join", status, body, headers)
        customer = returning or Customer(body["customerId"], body["token"], body["registrationId"], 0.0)
        customer.token, customer.registration_id = body["token"], body["registrationId"]
        customer.beat_at, customer.ghost = time.monotonic(), False
        if page_port:
            page = RankPage(page_port, customer.customer_id, customer.token, customer.registration_id, self.in_gap)
            self.pages.append(page)
            customer.page = page
            page.wait_for_snapshot()
        return Outcome("join", status=status, joined=None if returning else customer)

    def _heartbeat(self, customer: Customer, port: int) -> Outcome:
        outcome = self._call("heartbeat", port, "/api/queue/heartbeat", bearer=customer.token)
        if outcome.code == "ok":
            customer.beat_at = time.monotonic()
        return outcome

    def _counselor_heartbeat(self, desk: Desk, port: int) -> Outcome:
        outcome = self._call("counselor_heartbeat", port, "/api/counselor/heartbeat", key=desk.key)
        if outcome.code == "ok":
            desk.beat_at = time.monotonic()
        return outcome

    def _status(self, desk: Desk, port: int, status: str) -> Outcome:
        code, body, headers = request(port, "POST", "/api/counselor/status", key=desk.key, body={"status": status})
        if code < 300:
            desk.beat_at = time.monotonic()  # going on shift leases the counselor too
            return Outcome("status", status=code)
        return refused("status", code, body, headers)

    def _match(self) -> Outcome:
        self.trigger_pass()
        return Outcome("match")

    # -- bookkeeping ----------------------------------------------------------------

    def record(self, outcomes: list[Outcome], *, count: bool = True) -> list[str]:
        """Count what happened (unless it was keep-alive); return the outcomes no state race explains."""
        surprises = []
        for outcome in outcomes:
            if count:
                self.kinds[outcome.kind] += 1
                self.outcomes[(outcome.kind, outcome.code)] += 1
                self.seconds[outcome.kind] += outcome.seconds
            if outcome.joined is not None:
                self.customers.append(outcome.joined)
            if self.gap is not None:
                self.gap.note(outcome)
                if self.gap.accepts(outcome):
                    continue
            if outcome.code != "ok" and outcome.code not in EXPECTED.get(outcome.kind, ()):
                retry_after = f" (Retry-After {outcome.retry_after!r})" if outcome.status == 503 else ""
                surprises.append(f"{outcome.kind}: HTTP {outcome.status} {outcome.detail}{retry_after}")
        return surprises

    def page_reconnects(self) -> tuple[int, int, int]:
        """Return how many pages opened their socket again, how many times, and the failed tries to open one."""
        pages = [page for page in self.pages if page.reconnects]
        return len(pages), sum(p.reconnects for p in pages), sum(p.retried_opens for p in self.pages)

    def keep_alive(self, view: View, every: float = 1.5) -> list[Op]:
        """Heartbeats only: what the live pages and dashboards send while nothing else happens."""
        now, ops = time.monotonic(), []
        for customer in self.customers:
            if customer.registration_id in view.registrations and not customer.ghost and now - customer.beat_at > every:
                port = self.port()
                ops.append(Op("heartbeat", customer, lambda c=customer, p=port: self._heartbeat(c, p)))
        for desk in self.desks:
            if view.counselors[desk.pk] in ON_SHIFT and not desk.ghost and now - desk.beat_at > every:
                port = self.port()
                ops.append(Op("counselor_heartbeat", desk, lambda d=desk, p=port: self._counselor_heartbeat(d, p)))
        return ops
