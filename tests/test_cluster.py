"""The production topology as processes: two Daphne nodes, a Celery worker, one Redis, PostgreSQL.

A match made by the worker reaches a customer on the other node; a node
killed with SIGKILL loses no state (its clients reconnect elsewhere and get
their current state); a worker killed mid-pass leaves no half-made match and
the next pass completes it.
"""

import json
import time
import urllib.request

import pytest
from django.db import connections
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed

from matching import counselors
from matching.models import Counselor, Match
from queues.models import Registration
from tests.support.processes import celery_worker, daphne
from tests.support.stomp_ws import StompWs
from tests.test_server import call

pytestmark = pytest.mark.django_db(transaction=True)


def counselor_with_token(username: str) -> tuple[Counselor, str]:
    counselor = counselors.counselor_create(username=username, password="s3cret-pass-1")
    return counselor, Token.objects.create(user=counselor.user).key


def counselor_call(port: int, key: str, path: str, body: dict):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Token {key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def subscribed_customer(port: int, joined: dict) -> StompWs:
    client = StompWs(port)
    assert client.connect_customer(joined["token"]).command == "CONNECTED"
    client.subscribe(f"/topic/queue-rank/{joined['customerId']}")
    return client


def next_body(client: StompWs, want, timeout: float = 10) -> dict:
    """Return the first message body for which ``want(body)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.json(timeout=deadline - time.monotonic())
        if want(body):
            return body
    raise TimeoutError


def wait_for(condition, timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_matches_cross_nodes_and_nodes_and_workers_die_without_losing_state(tmp_path, redis_url, postgres):
    counselor, key = counselor_with_token("alice")
    with daphne(tmp_path, "node-a") as (port_a, node_a), daphne(tmp_path, "node-b") as (port_b, _):
        with celery_worker(tmp_path, "worker-1") as worker:
            joined = [call(port, "POST", "/api/queue/join", body={})[1] for port in (port_a, port_b, port_a, port_b)]
            head = subscribed_customer(port_b, joined[0])
            assert next_body(head, lambda b: True)["rank"] == 1
            desk = StompWs(port_a)
            desk.send("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0", "Authorization": f"Token {key}"})
            assert desk.frame().command == "CONNECTED"
            desk.subscribe(f"/topic/counselor/{counselor.counselor_id}")

            # The counselor on node A goes AVAILABLE; the worker matches; node B's customer hears it.
            counselor_call(port_a, key, "/api/counselor/status", {"status": "AVAILABLE"})
            matched = next_body(head, lambda b: b["status"] == "MATCHED")
            assigned = next_body(desk, lambda b: b.get("type") == "MATCH_ASSIGNED")
            assert matched["roomName"] == assigned["roomName"] and matched["matchId"] == assigned["matchId"]
            assert assigned["customerId"] == joined[0]["customerId"]

            # Node A dies; its customer reconnects to node B and gets its current state.
            second = subscribed_customer(port_a, joined[1])
            assert next_body(second, lambda b: True)["rank"] == 1
            node_a.kill()
            with pytest.raises(ConnectionClosed):  # the socket to node A is gone
                second.json(timeout=5)
            again = subscribed_customer(port_b, joined[1])
            assert next_body(again, lambda b: True)["rank"] == 1
            call(port_b, "POST", "/api/queue/cancel", joined[2]["token"])  # life goes on on node B
            status, state = call(port_b, "GET", "/api/queue/rank", joined[3]["token"])
            assert (status, state["rank"]) == (200, 2)

            # The worker dies in the middle of a pass: the lock on the queue version
            # row holds its pass just before commit, with the new match written.
            other, other_key = counselor_with_token("bob")
            blocker = connections.create_connection("default")
            with blocker.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute("SELECT version FROM queues_queuestate WHERE id = 1 FOR UPDATE")
                counselor_call(port_b, other_key, "/api/counselor/status", {"status": "AVAILABLE"})
                wait_for(lambda: lock_waiters() > 0, what="the worker's pass never blocked on the queue row")
                worker.kill()
                cursor.execute("ROLLBACK")
            blocker.close()
    assert not Match.objects.filter(counselor=other).exists()  # rolled back with the worker
    assert Registration.objects.get(pk=joined[1]["registrationId"]).status == "WAITING"
    assert Counselor.objects.get(pk=other.pk).status == "AVAILABLE"
    # The next pass (a fresh worker, asked once) completes what the dead one began.
    with celery_worker(tmp_path, "worker-2"):
        from matching.tasks import match_pass_task

        match_pass_task.delay()
        wait_for(lambda: Match.objects.filter(counselor=other, ended_at__isnull=True).exists(), what="no match")
    match = Match.objects.get(counselor=other)
    assert match.registration_id == joined[1]["registrationId"]
    assert Registration.objects.get(pk=joined[1]["registrationId"]).status == "MATCHED"


def lock_waiters() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]
