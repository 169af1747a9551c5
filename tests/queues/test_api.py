"""The queue's REST API: success and error paths, and the events on commit."""

import pytest

from common import events
from queues.models import Registration
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


def test_join_returns_a_token_rank_and_waiting_status(join):
    body = join("Mina")
    assert body["status"] == "WAITING"
    assert body["rank"] == 1
    assert body["customerId"].startswith("customer_")
    assert len(body["token"]) >= 40
    assert body["heartbeatSeconds"] == 10 and body["leaseSeconds"] == 40
    registration = Registration.objects.get(pk=body["registrationId"])
    assert registration.customer.display_name == "Mina"
    assert body["token"] not in registration.token_hash  # only the hash is stored


def test_each_new_customer_queues_behind_the_previous(join):
    ranks = [join()["rank"] for _ in range(3)]
    assert ranks == [1, 2, 3]


def test_join_publishes_one_queue_change_on_commit(api, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        api.post("/api/queue/join", {}, format="json")
    assert published == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert published.groups() == [events.QUEUE_GROUP]
    assert published[0][1]["type"] == "queue.changed"


def test_joining_again_with_an_active_token_returns_the_same_visit(join):
    first = join("Mina")
    again = join(token=first["token"])
    assert again["registrationId"] == first["registrationId"]
    assert again["token"] == first["token"]
    assert Registration.objects.count() == 1


def test_rejoining_after_cancel_keeps_the_customer_and_issues_a_new_token(api, join):
    first = join("Mina")
    api.post("/api/queue/cancel", **bearer(first["token"]))
    second = join(token=first["token"])
    assert second["customerId"] == first["customerId"]
    assert second["registrationId"] != first["registrationId"]
    assert second["token"] != first["token"]


@pytest.mark.parametrize(
    ("payload", "content_type", "error"),
    [
        ("{not json", "application/json", "malformed_json"),
        ('{"displayName": 42}', "application/json", "invalid"),
        ('{"displayName": "x", "vip": true}', "application/json", "invalid"),
        ('["a list"]', "application/json", "invalid"),
        ('{"displayName": "' + "x" * 81 + '"}', "application/json", "invalid"),
        ("displayName=x", "application/x-www-form-urlencoded", "unsupported_media_type"),
    ],
)
def test_join_refuses_bad_input_with_a_json_error_and_writes_nothing(api, payload, content_type, error):
    response = api.generic("POST", "/api/queue/join", payload, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert Registration.objects.count() == 0


def test_join_with_an_unknown_token_is_refused(api):
    response = api.post("/api/queue/join", {}, format="json", **bearer("forged"))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_heartbeat_returns_the_new_lease_expiry(api, join):
    body = join()
    response = api.post("/api/queue/heartbeat", **bearer(body["token"]))
    assert response.status_code == 200
    assert response.json()["leaseExpiresAt"] > events.epoch_ms()


@pytest.mark.parametrize("headers", [{}, bearer("nope"), {"HTTP_AUTHORIZATION": "Token abc"}, bearer("")])
@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/queue/heartbeat"), ("get", "/api/queue/rank"), ("post", "/api/queue/cancel")],
)
def test_customer_endpoints_refuse_a_missing_or_unknown_token(api, method, path, headers):
    response = getattr(api, method)(path, **headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_cancelled_registration_heartbeating_gets_a_conflict(api, join):
    body = join()
    api.post("/api/queue/cancel", **bearer(body["token"]))
    response = api.post("/api/queue/heartbeat", **bearer(body["token"]))
    assert response.status_code == 409
    assert response.json() == {"error": "not_active", "detail": "registration is CANCELLED"}


def test_rank_returns_what_the_push_channel_would_carry(api, join):
    join()
    body = join()
    state = api.get("/api/queue/rank", **bearer(body["token"])).json()
    assert state["status"] == "WAITING"
    assert state["rank"] == 2
    assert state["customerId"] == body["customerId"]
    assert set(state) >= {"customerId", "rank", "status", "timestamp", "version", "estimatedWaitSeconds"}


def test_cancel_moves_everyone_behind_up(api, join, django_capture_on_commit_callbacks):
    first, second, third = join(), join(), join()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post("/api/queue/cancel", **bearer(first["token"])).json() == {"status": "CANCELLED"}
    assert api.get("/api/queue/rank", **bearer(second["token"])).json()["rank"] == 1
    assert api.get("/api/queue/rank", **bearer(third["token"])).json()["rank"] == 2


def test_cancel_is_idempotent(api, join):
    body = join()
    first = api.post("/api/queue/cancel", **bearer(body["token"]))
    again = api.post("/api/queue/cancel", **bearer(body["token"]))
    assert first.status_code == again.status_code == 200
    assert again.json() == {"status": "CANCELLED"}


def test_cancel_tells_the_customer_and_the_queue(api, join, published, django_capture_on_commit_callbacks):
    body = join()
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/queue/cancel", **bearer(body["token"]))
    # The queue first: everyone behind waits on it; the one leaving has this response.
    assert published.groups() == [events.QUEUE_GROUP, events.customer_group(body["customerId"])]
    message = published.bodies(events.customer_group(body["customerId"]))[0]
    assert message["status"] == "CANCELLED"
    state = api.get("/api/queue/rank", **bearer(body["token"])).json()
    assert state["status"] == "CANCELLED" and "rank" not in state


def test_unknown_api_paths_answer_json_404(api):
    response = api.get("/api/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_wrong_method_is_a_json_405(api):
    response = api.get("/api/queue/join")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_the_openapi_schema_documents_every_endpoint(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/queue/join", "/api/queue/heartbeat", "/api/queue/rank", "/api/queue/cancel"):
        assert path in paths
    assert "/api/counselor/status" in paths and "/api/auth/token" in paths


def test_the_docs_page_renders(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
