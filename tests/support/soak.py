"""The soak's pieces: HTTP and STOMP clients, the simulated people, and the random operations.

The test process plays every customer and counselor at once. Each batch of
operations is planned on the main thread from one database snapshot, with
the seeded RNG (a seed repeats the random draws; what they act on still
depends on timing), and then run concurrently over HTTP against both nodes;
the Celery workers match on their own in between.
"""

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from tests.support.stomp_ws import StompWs

ACTIVE = ("WAITING", "MATCHED", "IN_CALL")
# On a lease, so their dashboards heart-beat (WRAP_UP too: matching.counselors.ON_LEASE).
ON_SHIFT = ("AVAILABLE", "AWAY", "BUSY", "WRAP_UP")
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


def http(port: int, method: str, path: str, *, bearer: str = "", key: str = "", body: dict | None = None):
    """Call a node; return (status, JSON body), or (status, {"error": "<not json>", ...}) for anything else."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    elif key:
        request.add_header("Authorization", f"Token {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"error": "<not json>", "detail": raw[:300].decode(errors="replace")}


class RankPage:
    """A customer's page: the rank topic over STOMP, read on a thread, stale versions dropped.

    It accepts messages as ``hearo-client.js`` does: the first one (the
    snapshot) always, later WAITING ones only if no older than the newest
    version seen, everything else as it comes.
    """

    def __init__(self, port: int, customer_id: str, token: str, registration_id: int) -> None:
        self.registration_id = registration_id
        self.shown: dict | None = None
        self.received: list[tuple[bool, dict]] = []  # (accepted, body), for the failure report
        self.problem = ""
        self.gone_since: float | None = None  # when the planner first saw the visit ended
        self._version = -1
        self._closing = False
        self._stomp = StompWs(port)
        connected = self._stomp.connect_customer(token)
        if connected.command != "CONNECTED":
            raise AssertionError(f"STOMP CONNECT refused: {connected}")
        self._stomp.subscribe(f"/topic/queue-rank/{customer_id}")
        self._thread = threading.Thread(target=self._read, name=f"rank-{registration_id}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                frame = self._stomp.frame(timeout=None)
                if frame.command != "MESSAGE":
                    self.problem = f"unexpected {frame.command}: {frame.headers} {frame.body!r}"
                    return
                self._show(json.loads(frame.body))
        except ConnectionClosed:
            if not self._closing:
                self.problem = "the server closed the socket"

    def _show(self, body: dict) -> None:
        accepted = self._accepts(body)
        self.received.append((accepted, body))
        if accepted:
            self.shown = body

    def _accepts(self, body: dict) -> bool:
        if body.get("registrationId") != self.registration_id:
            return False  # the same customer's later visit: another page's business
        if body.get("status") == "WAITING":
            if self.shown is not None and body["version"] < self._version:
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
    seconds: float = 0.0


@dataclass
class Op:
    kind: str
    actor: object
    action: Callable[[], Outcome]

    def run(self) -> Outcome:
        started = time.monotonic()
        outcome = self.action()
        outcome.seconds = time.monotonic() - started
        return outcome


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
        idle = [d for d in desks if view.counselors[d.pk] != "BUSY"]
        # Mostly a counselor who can change; now and then one in a call (refused).
        pool = idle if self.rng.random() < 0.97 else desks
        if not pool:
            return None
        desk = self.rng.choice(pool)
        status = self._next_status(view.counselors[desk.pk])
        desk.ghost = False
        port = self.port()
        return Op("status", desk, lambda: self._status(desk, port, status))

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
        status, body = http(port, "POST", path, **auth)
        if status < 300:
            return Outcome(kind, status=status)
        return Outcome(kind, code=body.get("error", "?"), status=status, detail=json.dumps(body)[:300])

    def _join(self, returning: Customer | None, port: int, page_port: int, asked: dict | None = None) -> Outcome:
        if returning and returning.page:
            returning.page.close()  # the old page: its socket speaks for the ended visit
            returning.page = None
        bearer = returning.token if returning else ""
        status, body = http(port, "POST", "/api/queue/join", bearer=bearer, body=asked or {})
        if status not in (200, 201):
            return Outcome("join", code=body.get("error", "?"), status=status, detail=json.dumps(body)[:300])
        customer = returning or Customer(body["customerId"], body["token"], body["registrationId"], 0.0)
        customer.token, customer.registration_id = body["token"], body["registrationId"]
        customer.beat_at, customer.ghost = time.monotonic(), False
        if page_port:
            customer.page = RankPage(page_port, customer.customer_id, customer.token, customer.registration_id)
            customer.page.wait_for_snapshot()
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
        code, body = http(port, "POST", "/api/counselor/status", key=desk.key, body={"status": status})
        if code < 300:
            desk.beat_at = time.monotonic()  # going on shift leases the counselor too
            return Outcome("status", status=code)
        return Outcome("status", code=body.get("error", "?"), status=code, detail=json.dumps(body)[:300])

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
            if outcome.code != "ok" and outcome.code not in EXPECTED.get(outcome.kind, ()):
                surprises.append(f"{outcome.kind}: HTTP {outcome.status} {outcome.detail}")
        return surprises

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
