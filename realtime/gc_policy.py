"""Keep the garbage collector's full pauses short on a socket node: freeze the long-lived heap.

A node holding thousands of sockets holds millions of long-lived objects, and
every full collection walks all of them with the event loop stopped (~0.5 s at
2,500 sockets). ``gc.freeze()`` moves every tracked object into a permanent
generation that collections skip, so after it a full collection walks only
what was allocated since. The price: a reference cycle that was frozen is never
collected, so the sockets that close after their objects were frozen leave
their cycles behind. This module decides when to pay which price, from two
cheap numbers: the node's open connections and a clock.

- boot: on the first request or connection, before serving it, collect and
  freeze what loading the app made (the modules, Django, the URLconf). Until
  then every full collection walked all of it (~0.1 s a time on a REST node,
  two in its first 10 s of heartbeats: measured, bench/RESULTS.md); the first
  request (in production the proxy's health check) takes that pause once.
- start-up: once the server has served its first requests and settled, collect
  and freeze again (what the first requests made: lazily built caches).
- storm: whenever open connections grew by ``storm`` since the last freeze
  (or by ``tail`` and the count settled), freeze the newcomers after collecting
  only the young generations: a full collection there walked every object made
  since the last freeze and stalled a node's pushes ~0.1 s (the last part of a
  storm lands just as the node starts pushing to the newcomers; measured, the
  N = 1,000 fan-out's slowest change). Cyclic garbage that had already reached
  the oldest generation is frozen with them, bounded like closed sockets' by
  the cycles below.
- leak / age: when the frozen connections that must have closed (the count
  fell below them since the freeze) exceed ``leak_factor - 1`` times the open
  ones (floor: ``storm``), or the last unfreeze is ``max_age`` old and sockets
  came and went since (checked in a quiet tick), unfreeze, collect everything
  once (one long pause, the one the default collector would take anyway) and
  freeze again; at most once per ``min_gap``. Frozen garbage is thus bounded:
  by the sockets closed since the last such cycle, never older than ``max_age``.

``gc.get_freeze_count()`` walks the whole permanent generation (tens of ms on a
big node), so it is read only after the freezes that walk the whole heap anyway;
a storm freeze adds the size of the oldest generation it moves (a list of it).
"""

import asyncio
import contextvars
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from common import metrics

log = logging.getLogger(__name__)

# How often the policy looks at the open-connection count (one gauge read).
TICK_SECONDS = 5.0


@dataclass(frozen=True)
class Limits:
    storm: int = 500  # connections opened since the last freeze that make a storm worth freezing
    tail: int = 100  # newcomers frozen once the count settles (the last part of a storm)
    quiet: int = 50  # at most this change in open connections over one tick: a quiet moment (start-up, age)
    leak_factor: float = 2.0  # unfreeze when the frozen connections known closed exceed (this - 1) x the open
    max_age: float = 600.0  # seconds a frozen heap may stand while sockets come and go
    min_gap: float = 60.0  # seconds between two unfreeze cycles (each walks the whole heap)
    start_delay: float = 10.0  # seconds after the first request before the start-up freeze


class Policy:
    """Decide from counts and a clock alone when to freeze and when to unfreeze first.

    ``frozen_connections`` estimates the connections whose objects are frozen,
    dead or alive: the open ones at an unfreeze cycle, plus the net newcomers
    at each storm freeze. Pure: the caller performs the decision and reports it
    back with ``record``.
    """

    def __init__(self, limits: Limits, *, now: float) -> None:
        self.limits = limits
        self.started = now
        self.cycled_at: float | None = None  # the start-up freeze or the last unfreeze; None: not yet
        self.frozen_connections = 0
        self.low = 0  # fewest open connections since the last freeze: where a storm is counted from
        self.last_open = 0
        self.moved = False  # connections came or went since the last unfreeze

    def decide(self, *, now: float, open_now: int) -> str | None:
        """Return why to collect and freeze now ("start-up", "storm", "leak", "age"), or None."""
        quiet = abs(open_now - self.last_open) <= self.limits.quiet
        self.moved = self.moved or open_now != self.last_open
        self.low = min(self.low, open_now)
        self.last_open = open_now
        if self.cycled_at is None:
            # A node restarted into a reconnect storm freezes what it has rather than wait for quiet.
            settled = quiet or open_now - self.low >= self.limits.storm
            return "start-up" if settled and now - self.started >= self.limits.start_delay else None
        may_cycle = now - self.cycled_at >= self.limits.min_gap
        # At most ``low`` frozen connections can still be open: the count fell that
        # far since the freeze, and every newcomer since is not frozen. Not waiting
        # for quiet: a node that never settles must still be bounded.
        if may_cycle and self.frozen_connections - self.low >= self.dead_allowance(open_now):
            return "leak"
        # Not waiting for the storm to end either: each freeze then walks only the
        # last ``storm`` newcomers, short pauses while they connect instead of one
        # long one when the node is busy pushing to them.
        grown = open_now - self.low
        if grown >= self.limits.storm or (quiet and grown >= self.limits.tail):
            return "storm"  # or its last part, once the count settles
        if may_cycle and quiet and self.moved and now - self.cycled_at >= self.limits.max_age:
            return "age"
        return None

    def dead_allowance(self, open_now: int) -> float:
        """Return how many more frozen than open connections are let stand (a floor keeps small nodes calm)."""
        return max(self.limits.storm, (self.limits.leak_factor - 1) * open_now)

    @staticmethod
    def unfreezes(reason: str) -> bool:
        """Return whether this freeze must first unfreeze (to let the dead cycles go)."""
        return reason in ("leak", "age")

    def record(self, reason: str, *, now: float, open_now: int) -> None:
        """Note that a freeze for ``reason`` was done with ``open_now`` connections open."""
        if reason == "start-up" or self.unfreezes(reason):
            self.frozen_connections = open_now
            self.cycled_at = now
            self.moved = False
        else:
            self.frozen_connections += open_now - self.low
        self.low = self.last_open = open_now


def refreeze(*, unfreeze: bool) -> int:
    """Collect (everything, if ``unfreeze``), freeze what survives, and return the frozen count."""
    if unfreeze:
        gc.unfreeze()  # into the oldest generation: the collection below walks all of it once
    gc.collect()  # garbage frozen now would never be collected
    gc.freeze()
    return gc.get_freeze_count()


def freeze_newcomers(frozen_before: int) -> int:
    """Collect the young generations, freeze what is left, and return the frozen count (not walking it)."""
    gc.collect(1)  # the young ones are empty now: the oldest generation is what moves
    moved = len(gc.get_objects(generation=2))
    gc.freeze()
    return frozen_before + moved


def open_connections() -> int:
    """Return this process's open push connections, every tier (the hearo_connections gauge)."""
    return int(sum(sample.value for family in metrics.connections.collect() for sample in family.samples))


def step(policy: Policy, *, now: float, open_now: int) -> str | None:
    """Run one decision of the policy and, if it says so, freeze; return the reason."""
    reason = policy.decide(now=now, open_now=open_now)
    if reason is None:
        return None
    unfreeze = policy.unfreezes(reason)
    started = time.perf_counter()
    if reason == "storm":
        frozen = freeze_newcomers(_runner.frozen_objects)
    else:
        frozen = refreeze(unfreeze=unfreeze)
    policy.record(reason, now=now, open_now=open_now)
    _freeze_report(reason, unfreeze=unfreeze, frozen=frozen, open_now=open_now, started=started)
    return reason


def boot_freeze() -> None:
    """Collect and freeze what loading the app made (the policy's first freeze, before any traffic)."""
    started = time.perf_counter()
    _freeze_report("boot", unfreeze=False, frozen=refreeze(unfreeze=False), open_now=0, started=started)


def _freeze_report(reason: str, *, unfreeze: bool, frozen: int, open_now: int, started: float) -> None:
    _runner.frozen_objects = frozen
    metrics.gc_frozen_objects.set(frozen)
    metrics.gc_freezes.labels(reason=reason).inc()
    if unfreeze:
        metrics.gc_unfreezes.inc()
    fields = {"event": "gc.freeze", "reason": reason, "frozen": frozen, "connections": open_now}
    log.info("froze the long-lived heap in %.3f s", time.perf_counter() - started, extra=fields)


async def run_forever(
    policy: Policy, *, tick: float = TICK_SECONDS, count: Callable[[], int] = open_connections
) -> None:
    """Apply the policy every ``tick`` seconds; never return."""
    while True:
        await asyncio.sleep(tick)
        step(policy, now=time.monotonic(), open_now=count())


class _Runner:
    """This process's policy, the task applying it and its frozen-object count as of the last freeze.

    Per process, not per loop: so is the collector.
    """

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.task: asyncio.Task | None = None
        self.frozen_objects = 0


_runner = _Runner()


def ensure_started() -> None:
    """Start the policy on the running event loop once per process; idempotent and cheap.

    Call it from inside the server's event loop (an ASGI app's first request
    or connection); a no-op when HEARO_GC_FREEZE is off.
    """
    if not settings.HEARO_GC_FREEZE:
        return
    task = _runner.task
    if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
        return  # every request after the first
    if _runner.policy is None:
        boot_freeze()
        _runner.policy = Policy(Limits(), now=time.monotonic())
    loop = asyncio.get_running_loop()
    # A fresh context: the task must not inherit the first request's (asgiref's executor ends with it).
    _runner.task = loop.create_task(run_forever(_runner.policy), name="hearo-gc-policy", context=contextvars.Context())
