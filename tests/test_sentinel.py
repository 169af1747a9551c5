"""A Redis Sentinel failover under load: nothing lost, every node follows, pushes resume.

Real processes: a primary, a replica and three sentinels (Debian's redis-server
and redis-sentinel), two Daphne nodes and a Celery worker configured with
REDIS_SENTINELS only. 200 customers hold STOMP sockets spread over both nodes
while cancels and heartbeats go on; the primary is SIGKILLed in the middle.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import pytest
from channels.db import database_sync_to_async

from bench.clients import StompSocket, http_call
from bench.redis_ha import redis_ha, redis_ha_available
from matching import counselors
from matching.models import Match
from queues.models import Registration
from queues.selectors import queue_order
from tests.conftest import need
from tests.support.processes import celery_worker, daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(420)]

CUSTOMERS = 200
CANCELS = 40  # customers who leave while the primary dies
# Short enough that a failover mishandled by the sweep would expire someone; long
# enough that a loaded CI machine keeps 200 customers alive while they connect.
LEASE_SECONDS, HEARTBEAT_SECONDS = 20, 3


@dataclass
class Customer:
    registration_id: int
    customer_id: str
    token: str
    port: int
    bodies: list = field(default_factory=list)  # (arrival, body)
    sock: StompSocket | None = None
    cancelled: bool = False

    def on_message(self, body: dict, now: float) -> None:
        self.bodies.append((now, body))

    def last(self) -> dict:
        """Return what the page would show now: later news wins, an older seq or queue version does not."""
        shown, seq, version = {}, -1, -1
        for _, body in self.bodies:
            if body.get("seq") is not None and body["seq"] < seq:
                continue
            if body.get("seq") is None and body.get("version", 0) < version:
                continue
            shown, seq = body, body.get("seq", seq)
            version = max(version, body.get("version", version))
        return shown


def sentinel_env(ha) -> dict:
    prefix = f"ha-{uuid.uuid4().hex[:8]}"
    broker = ";".join(f"sentinel://127.0.0.1:{port}" for port in ha.sentinel_ports)
    return {
        **ha.env(),
        "CELERY_BROKER_URL": broker,
        "HEARO_CACHE_PREFIX": prefix,
        "HEARO_CHANNEL_PREFIX": prefix,
        "HEARO_LEASE_SECONDS": str(LEASE_SECONDS),
        "HEARO_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "HEARO_MATCH_ON_EVENTS": "1",
    }


async def retried(port: int, method: str, path: str, auth: str | None = None, body: dict | None = None):
    """Call the API as the page does: a 503 during the failover is retried after its Retry-After."""
    for _ in range(60):
        status, answer = await http_call(port, method, path, auth, body)
        if status != 503:
            return status, answer
        assert answer["error"] == "unavailable", answer
        await asyncio.sleep(0.5)
    raise AssertionError(f"{method} {path} still 503 after 30 s")


async def join(ports: list[int], customers: list[Customer]) -> None:
    """Join CUSTOMERS visits, in order (their ranks), over both nodes, into ``customers``."""
    for i in range(CUSTOMERS):
        port = ports[i % 2]
        status, body = await http_call(port, "POST", "/api/queue/join", body={})
        assert status == 201, body
        customers.append(Customer(body["registrationId"], body["customerId"], body["token"], port))


async def watch_all(customers: list[Customer]) -> None:

    async def watch(customer: Customer) -> None:
        url = f"ws://127.0.0.1:{customer.port}/ws/stomp"
        auth = {"Authorization": f"Bearer {customer.token}"}
        customer.sock = await StompSocket.open(url, auth, customer.on_message)
        await customer.sock.subscribe(f"/topic/queue-rank/{customer.customer_id}")

    for start in range(0, CUSTOMERS, 50):
        await asyncio.gather(*(watch(c) for c in customers[start : start + 50]))


async def heartbeats(customers: list[Customer], stop: asyncio.Event) -> None:
    """Keep every customer alive as the page does, retrying through the gap."""
    while not stop.is_set():
        joined = list(customers)  # still growing while the visits join
        for start in range(0, len(joined), 25):
            batch = [c for c in joined[start : start + 25] if not c.cancelled]
            await asyncio.gather(*(retried(c.port, "POST", "/api/queue/heartbeat", f"Bearer {c.token}") for c in batch))
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def cancels(leaving: list[Customer]) -> None:
    for customer in leaving:
        status, body = await retried(customer.port, "POST", "/api/queue/cancel", f"Bearer {customer.token}")
        assert status == 200, body
        customer.cancelled = True
        await asyncio.sleep(0.1)


async def until(what: str, ready, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def scenario(ha, ports: list[int], counselor_token: str) -> list[Customer]:
    customers: list[Customer] = []
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeats(customers, stop))  # each alive from its join, as pages are
    await join(ports, customers)
    await watch_all(customers)
    await until("every customer holds its first rank", lambda: all(c.last().get("rank") for c in customers))
    leaving = customers[10 : 10 + CANCELS]
    cancelling = asyncio.create_task(cancels(leaving))
    await asyncio.sleep(1.0)  # changes under way

    killed_at = time.monotonic()
    old = ha.kill_primary()
    new = await asyncio.to_thread(ha.wait_promoted, old, 60)
    promoted_at = time.monotonic()
    print(f"\nprimary {old} killed; {new} promoted after {time.monotonic() - killed_at:.1f} s")
    await cancelling

    # A counselor comes on shift after the failover: the worker matches the head of the queue.
    status, body = await retried(
        ports[0], "POST", "/api/counselor/status", f"Token {counselor_token}", {"status": "AVAILABLE"}
    )
    assert status == 200, body
    head = customers[0]
    await until("the worker matched the head of the queue", lambda: head.last().get("status") == "MATCHED", 60)

    waiting = [c for c in customers if not c.cancelled and c is not head]
    # database_sync_to_async gives its connection back to the pool; a bare to_thread's stayed checked out.
    order = await database_sync_to_async(lambda: {r: i for i, r in enumerate(queue_order().ids, start=1)})()

    def settled_one(customer: Customer) -> bool:
        return customer.last().get("rank") == order.get(customer.registration_id)

    def settled() -> bool:
        return all(settled_one(c) for c in waiting)

    try:
        await until("every waiting customer holds its true rank", settled, 60)
    except AssertionError:
        wrong = [(c.registration_id, c.last(), order.get(c.registration_id)) for c in waiting if not settled_one(c)]
        raise AssertionError(f"{len(wrong)} hold a wrong rank, e.g. {wrong[:3]}") from None
    pushed_after = [at for c in customers for at, _ in c.bodies if at > promoted_at]
    first, promoted = min(pushed_after) - killed_at, promoted_at - killed_at
    print(f"first push {first:.2f} s after the kill (the replica was promoted at {promoted:.2f} s)")
    stop.set()
    await beating
    assert all(not c.sock.ws.close_code for c in customers), "a socket was dropped during the failover"
    for customer in customers:
        await customer.sock.close()
    assert ha.primary_port() == new != old
    return customers


def node_metric(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def node_ready_for_redis(port: int) -> str:
    import json
    import urllib.error
    import urllib.request

    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10).read()
    except urllib.error.HTTPError as exc:  # 503: the matcher check fails without a beat here
        body = exc.read()
    return json.loads(body)["checks"]["redisPrimary"]


def test_a_sentinel_failover_loses_nothing_and_every_node_follows(tmp_path):
    need(redis_ha_available(), "redis-sentinel (apt-get install redis-sentinel)")
    counselor = counselors.counselor_create(username="failover", password="s3cret-pass-1", display_name="F")
    counselors.counselor_set_status(counselor=counselor, status="OFFLINE")
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=counselor.user).key
    with redis_ha(tmp_path) as ha:
        env = sentinel_env(ha)
        with (
            daphne(tmp_path, "node-a", **env) as (port_a, _),
            daphne(tmp_path, "node-b", **env) as (port_b, _),
            celery_worker(tmp_path, "ha-worker", **env),
        ):
            assert node_ready_for_redis(port_a) == "ok"
            customers = asyncio.run(scenario(ha, [port_a, port_b], token))
            for port in (port_a, port_b):
                assert node_metric(port, "hearo_redis_failovers_total") >= 1
                assert node_metric(port, "hearo_redis_failover_recovery_seconds_count") >= 1
                assert node_ready_for_redis(port) == "ok"

    # Nothing lost, nobody wrongly expired, no registration twice.
    by_id = {r.id: r for r in Registration.objects.filter(id__in=[c.registration_id for c in customers])}
    assert len(by_id) == CUSTOMERS
    statuses = [by_id[c.registration_id].status for c in customers]
    assert statuses.count("CANCELLED") == CANCELS
    assert statuses.count("MATCHED") + statuses.count("IN_CALL") == 1
    assert "EXPIRED" not in statuses
    assert Match.objects.filter(registration_id=customers[0].registration_id).count() == 1
