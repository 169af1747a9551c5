"""`make run`'s server for real: Daphne serving the REST flow a user would curl."""

import json
import urllib.error
import urllib.request

import pytest

from tests.support.processes import daphne


def call(port: int, method: str, path: str, token: str | None = None, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_join_heartbeat_rank_cancel_through_a_real_daphne(tmp_path):
    with daphne(tmp_path) as (port, _):
        status, joined = call(port, "POST", "/api/queue/join", body={"displayName": "Mina"})
        assert status == 201 and joined["rank"] == 1
        token = joined["token"]
        status, lease = call(port, "POST", "/api/queue/heartbeat", token)
        assert status == 200 and lease["leaseExpiresAt"] > joined["timestamp"]
        status, state = call(port, "GET", "/api/queue/rank", token)
        assert (status, state["status"], state["rank"]) == (200, "WAITING", 1)
        status, cancelled = call(port, "POST", "/api/queue/cancel", token)
        assert (status, cancelled) == (200, {"status": "CANCELLED"})
        status, error = call(port, "POST", "/api/queue/heartbeat", token)
        assert status == 409 and error["error"] == "not_active"
        status, error = call(port, "POST", "/api/queue/join", body={"displayName": 5})
        assert status == 400 and error["error"] == "invalid"


@pytest.mark.django_db(transaction=True)
def test_a_real_daphne_freezes_its_loaded_heap_before_serving_its_first_request(tmp_path):
    with daphne(tmp_path) as (port, _):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("hearo_gc_"))
    assert float(samples['hearo_gc_freezes_total{reason="boot"}']) == 1
    assert float(samples["hearo_gc_frozen_objects"]) > 10_000
