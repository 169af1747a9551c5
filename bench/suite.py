"""The whole suite, cluster by cluster: each design is measured in the same run as its baselines."""

import asyncio
import logging
import random
import time
import traceback
from dataclasses import dataclass, field

from bench import profile
from bench.cluster import REST_NICE, asgi_server, cluster
from bench.context import PHASES, Context, harness_mode
from bench.rabbitmq import private_rabbitmq
from bench.redis_ha import redis_ha
from bench.scenarios import failover, fanout, heartbeat, lines, match, memory, polling, rabbit

log = logging.getLogger("bench")
HUB_CAPACITY = 1000  # HearO's own default (HEARO_CHANNEL_CAPACITY)
CHANNELS_REDIS_DEFAULT = 100
RAISED_CAPACITY = 100_000


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    hub_changes: dict[int, int]
    naive_changes: dict[int, int]
    rabbit_changes: dict[int, int]
    memory_connections: int
    heartbeat_n: int
    heartbeat_rate: float
    heartbeat_seconds: float
    knee_rates: tuple[float, ...]
    knee_seconds: float
    django_rates: tuple[float, ...]
    poll_seconds: float
    match_samples: int
    bursts: dict = field(default_factory=lambda: {"burst_every": 5, "burst_size": 5})
    # N -> changes for the hub with 3 queues x 2 languages (issue #13), run beside the one-queue hub at that N.
    lines_changes: dict[int, int] = field(default_factory=dict)
    # Redis Sentinel failover (issue #16): connected customers, primaries killed, cancels during each gap.
    failover_n: int = 1000
    failover_kills: int = 5
    failover_cancels: int = 5


FULL = Plan(
    sizes=(1000, 5000),
    hub_changes={1000: 30, 5000: 20},
    naive_changes={1000: 8, 5000: 2},
    # As many changes as the hub's at each N: their p50 and p99 are compared (issue #17).
    rabbit_changes={1000: 30, 5000: 20},
    memory_connections=2000,
    heartbeat_n=5000,
    heartbeat_rate=500,
    heartbeat_seconds=10,
    knee_rates=(250, 500, 1000, 2000),
    knee_seconds=5,
    django_rates=(100, 500),
    poll_seconds=10,
    match_samples=10,
    lines_changes={5000: 20},
)
QUICK = Plan(
    sizes=(200,),
    hub_changes={200: 10},
    naive_changes={200: 3},
    rabbit_changes={200: 10},
    memory_connections=200,
    heartbeat_n=200,
    heartbeat_rate=500,
    heartbeat_seconds=3,
    knee_rates=(500, 1000),
    knee_seconds=2,
    django_rates=(500,),
    poll_seconds=3,
    match_samples=3,
    lines_changes={200: 10},
    failover_n=200,
    failover_kills=2,
)


def celery_queue_purge(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    client.close()


class Suite:
    def __init__(self, ctx: Context, plan: Plan, phases: tuple[str, ...] = PHASES) -> None:
        self.ctx, self.plan, self.phases = ctx, plan, phases
        self.results: dict = {}
        self.started = time.monotonic()

    async def step(self, path: tuple[str, ...], coro) -> None:
        """Run one measurement; a failure is recorded and the suite goes on."""
        log.info("[%5.0fs] %s", time.monotonic() - self.started, "/".join(map(str, path)))
        node = self.results
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = await coro
        except Exception as exc:
            log.exception("%s failed", path)
            node[path[-1]] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}

    def plan_for(self, changes: int, bound: float) -> dict:
        return {"changes": changes, "bound": bound, **self.plan.bursts}

    async def run(self) -> dict:
        for phase in (getattr(self, name) for name in self.phases):
            try:
                await phase()
            except Exception as exc:  # a cluster that would not start: record it, go on
                log.exception("phase %s failed", phase.__name__)
                self.results.setdefault("phase_errors", {})[phase.__name__] = f"{type(exc).__name__}: {exc}"[:2000]
        return self.results

    # -- phases ----------------------------------------------------------------

    async def hub(self) -> None:
        harness_mode(fanout="hub", capacity=HUB_CAPACITY)
        with cluster("hub", self.ctx.env, self.ctx.logdir, rest_nodes=1) as nodes:
            await self.step(("memory",), memory.memory_per_connection(nodes, self.plan.memory_connections))
            for n in self.plan.sizes:
                big = n == max(self.plan.sizes)
                await self.fanout_step(("fanout", "hub", str(n)), nodes, n, self.plan.hub_changes[n], 10, big)
            for n, changes in self.plan.lines_changes.items():
                await self.step(("fanout", "hub_lines", str(n)), self.lines_fanout(nodes, n, changes, 10))
            await self.step(("polling",), self.polling(nodes))
            await self.step(("heartbeat", "fastpath"), self.heartbeat(nodes, fast=True))

    async def fanout_step(self, path, nodes, n: int, changes: int, bound: float, profiled: bool = False) -> None:
        async def go():
            async with fanout.hearo_room(nodes, n) as (room, http, _):
                cpu = fanout.cpu_window(nodes, self.ctx)
                plan = self.plan_for(changes, bound)
                result = await fanout.fanout_measure(self.ctx, nodes.ports, room, http, plan, cpu=cpu)
                if profiled:
                    result["profile_node_a"] = await self.fanout_profile(nodes, room, http)
                return result

        await self.step(path, go())

    async def lines_fanout(self, nodes, n: int, changes: int, bound: float) -> dict:
        """The hub with 3 queues x 2 languages, in the same cluster as the one-queue runs just before."""
        async with lines.lines_room(nodes, n) as (room, http):
            return await lines.lines_measure(self.ctx, nodes.ports, room, http, self.plan_for(changes, bound))

    async def fanout_profile(self, nodes, room, http) -> dict:
        """Sample node A while 8 more changes run (kept out of the latency figures above)."""
        sampler = asyncio.create_task(profile.record(nodes.pid(0), 8))
        await asyncio.sleep(0.5)
        changes = await fanout.changes_run(room, http, self.plan_for(8, 10), random.Random(3))
        return {"changes": fanout.changes_summary(changes)["all"], "profile": await sampler}

    async def polling(self, nodes) -> dict:
        async with fanout.hearo_room(nodes, self.plan.sizes[0]) as (_, __, seats):
            return await polling.polling_at(self.ctx, nodes, seats, self.plan.poll_seconds)

    async def heartbeat(self, nodes, *, fast: bool) -> dict:
        p = self.plan
        async with fanout.hearo_room(nodes, p.heartbeat_n) as (room, http, seats):
            both, one = (self.ctx, nodes.ports, room, http, seats), (self.ctx, nodes.ports[:1], room, http, seats)
            if not fast:
                return {"runs": await heartbeat.heartbeat_runs(*both, list(p.django_rates), p.heartbeat_seconds)}
            # As deployed: the proxy sends /api/ to a node that holds no sockets. First
            # after the clients connect, the least favourable slot (see RESULTS.md).
            rest = (self.ctx, nodes.rest_ports, room, http, seats)
            watch = {"REST node": nodes.rest_nodes[0].pid, "socket node A": nodes.pid(0), "socket node B": nodes.pid(1)}
            every = [*nodes.rest_ports, *nodes.ports]
            before = await fanout.node_scrape(every)
            rest_main = await heartbeat.under_fanout(*rest, p.heartbeat_rate, p.heartbeat_seconds, watch)
            collections = fanout.node_full_collections(before, await fanout.node_scrape(every))
            # A stall of the whole node may be its own full collection: count them in the window; and
            # the socket nodes' (a long one holds a CPU the REST node may then wait for).
            rest_main["node_full_collections"] = collections[:1]
            rest_main["socket_node_full_collections"] = collections[1:]
            rest_main["cpu_weighted"] = nodes.rest_weighted
            rest_even = None  # the run above was already at an even weight where none could be set
            if nodes.rest_weighted:
                # The baseline: the same REST node at a socket node's CPU weight, right after.
                nodes.rest_weight(0)
                rest_even = await heartbeat.under_fanout(*rest, p.heartbeat_rate, p.heartbeat_seconds, watch)
                nodes.rest_weight(REST_NICE)
            main = await heartbeat.under_fanout(*both, p.heartbeat_rate, p.heartbeat_seconds, watch)
            single = await heartbeat.under_fanout(*one, p.heartbeat_rate, p.knee_seconds)
            knee = await heartbeat.heartbeat_runs(*both, list(p.knee_rates), p.knee_seconds)
            rest_knee = await heartbeat.heartbeat_runs(*rest, list(p.knee_rates), p.knee_seconds)
            sampler = asyncio.create_task(profile.record(nodes.pid(0), max(2, p.knee_seconds - 1)))
            profiled = await heartbeat.under_fanout(*both, p.heartbeat_rate, p.knee_seconds)
            profiled["profile_node_a"] = await sampler
            sampler = asyncio.create_task(profile.record(nodes.rest_nodes[0].pid, max(2, p.knee_seconds - 1)))
            rest_profiled = await heartbeat.under_fanout(*rest, p.heartbeat_rate, p.knee_seconds)
            rest_profiled["profile_rest_node"] = await sampler
            return {
                "rest_profiled": rest_profiled,
                "rest_node": rest_main,
                "rest_node_even_weight": rest_even,
                "main": main,
                "single_node": single,
                "knee": knee,
                "rest_knee": rest_knee,
                "profiled": profiled,
            }

    async def hub_django_heartbeat(self) -> None:
        harness_mode(fanout="hub", capacity=HUB_CAPACITY)
        with cluster("django-hb", self.ctx.env, self.ctx.logdir, HEARO_HEARTBEAT_FASTPATH="0") as nodes:
            await self.step(("heartbeat", "django_view"), self.heartbeat(nodes, fast=False))

    async def uvicorn(self) -> None:
        """The hub phase's two-node fan-out at the same N, the socket nodes on Uvicorn (issue #17)."""
        harness_mode(fanout="hub", capacity=HUB_CAPACITY)
        # The hub phase's server, for the report's label (HEARO_ASGI_SERVER in the bench's shell moves it too).
        self.results.setdefault("uvicorn", {})["baseline_server"] = asgi_server(self.ctx.env)
        with cluster("uvicorn", self.ctx.env, self.ctx.logdir, rest_nodes=1, HEARO_ASGI_SERVER="uvicorn") as nodes:
            await self.step(("uvicorn", "memory"), memory.memory_per_connection(nodes, self.plan.memory_connections))
            for n in self.plan.sizes:
                await self.fanout_step(("uvicorn", "fanout", str(n)), nodes, n, self.plan.hub_changes[n], 10)
        # The naive design on the same server, so the speed-up on Uvicorn compares designs, not servers.
        n = min(self.plan.sizes)
        harness_mode(fanout="naive", capacity=RAISED_CAPACITY)
        extra = {
            "HEARO_FANOUT": "naive",
            "HEARO_CHANNEL_CAPACITY": str(RAISED_CAPACITY),
            "HEARO_ASGI_SERVER": "uvicorn",
        }
        try:
            with cluster("uvicorn-naive", self.ctx.env, self.ctx.logdir, rest_nodes=1, **extra) as nodes:
                path = ("uvicorn", "naive_cap100k", str(n))
                await self.fanout_step(path, nodes, n, self.plan.naive_changes[n], 10)
        finally:
            harness_mode(fanout="hub", capacity=HUB_CAPACITY)

    async def naive(self) -> None:
        for label, capacity in (("naive_cap100", CHANNELS_REDIS_DEFAULT), ("naive_cap100k", RAISED_CAPACITY)):
            harness_mode(fanout="naive", capacity=capacity)
            extra = {"HEARO_FANOUT": "naive", "HEARO_CHANNEL_CAPACITY": str(capacity)}
            with cluster(label, self.ctx.env, self.ctx.logdir, rest_nodes=1, **extra) as nodes:
                for n in self.plan.sizes:
                    await self.fanout_step(("fanout", label, str(n)), nodes, n, self.plan.naive_changes[n], 10)
        harness_mode(fanout="hub", capacity=HUB_CAPACITY)

    async def rabbit(self) -> None:
        """The Web-STOMP relay at the hub's sizes, on a RabbitMQ node of this phase's own (issue #17)."""
        with private_rabbitmq(self.ctx.logdir) as broker:
            for n in self.plan.sizes:
                plan = self.plan_for(self.plan.rabbit_changes[n], 10)
                await self.step(("fanout", "rabbitmq", str(n)), rabbit.rabbit_at(broker, n, plan))

    async def matching(self) -> None:
        # The fan-out clusters ran no worker: drop the matcher passes their cancels queued.
        await asyncio.to_thread(celery_queue_purge, self.ctx.redis_url)
        for label, on_events, jitter in (("event_driven", "1", 0.5), ("beat_only", "0", 5.0)):
            with cluster(
                f"match-{label}", self.ctx.env, self.ctx.logdir, celery=True, HEARO_MATCH_ON_EVENTS=on_events
            ) as nodes:
                await self.step(("match", label), match.match_samples(nodes, self.plan.match_samples, jitter))

    async def failover(self) -> None:
        """Both socket nodes behind a primary, a replica and three sentinels of this phase's own."""
        harness_mode(fanout="hub", capacity=HUB_CAPACITY)
        p = self.plan
        timing = {"down_after_ms": failover.DOWN_AFTER_MS, "failover_timeout_ms": failover.FAILOVER_TIMEOUT_MS}
        with redis_ha(self.ctx.logdir, **timing) as ha:
            with cluster("failover", failover.node_env(self.ctx.env, ha), self.ctx.logdir) as nodes:
                measure = failover.failover_measure(ha, nodes, p.failover_n, p.failover_kills, p.failover_cancels)
                await self.step(("failover",), measure)
