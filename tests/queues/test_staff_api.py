"""The staff API of the queues (/api/admin/queues): who may call it, what it refuses, what a change keeps."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from common import events
from matching import counselors
from queues import selectors, services
from queues.models import DEFAULT_QUEUE_ID, Queue, Registration
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

PASSWORD = "s3cret-pass-1"
NOT_STAFF = ["anonymous", "customer", "counselor session", "counselor token"]
STAFF = ["staff session", "staff token"]
YOUTH = {
    "queueId": "youth",
    "name": {"ko": "청소년 상담", "en": "Youth line"},
    "languages": ["ko"],
    "hours": [{"day": day, "opens": "09:00", "closes": "22:00"} for day in range(7)],
    "overflowQueueId": "general",
    "overflowAfterSeconds": 900,
}


def client_as(caller: str, django_user_model) -> APIClient:
    """Return an API client for one kind of caller: a visitor, a customer, a counselor or staff."""
    client = APIClient()
    if caller == "customer":
        client.credentials(**bearer(services.registration_join(display_name="Mina").token))
    elif caller != "anonymous":
        who, how = caller.split()
        if who == "counselor":
            user = counselors.counselor_create(username="alice", password=PASSWORD).user
        else:
            user = django_user_model.objects.create_user(username="boss", password=PASSWORD, is_staff=True)
        if how == "session":
            assert client.login(username=user.username, password=PASSWORD)
        else:
            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def staff(django_user_model) -> APIClient:
    return client_as("staff token", django_user_model)


def create(staff: APIClient, body: dict) -> dict:
    response = staff.post("/api/admin/queues", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- Who may call --------------------------------------------------------------------------------

CALLS = [
    ("get", "/api/admin/queues", None),
    ("post", "/api/admin/queues", YOUTH),
    ("get", "/api/admin/queues/youth", None),
    ("patch", "/api/admin/queues/youth", {"maxWaiting": 1}),
    ("delete", "/api/admin/queues/youth", None),
]


@pytest.mark.parametrize("caller", NOT_STAFF)
@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_anyone_but_staff_gets_a_json_403_and_changes_nothing(caller, method, path, body, django_user_model, staff):
    create(staff, {"queueId": "youth", "name": {"en": "Youth line"}})
    client = client_as(caller, django_user_model)
    response = getattr(client, method)(path, body, format="json")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "staff_only"
    youth = Queue.objects.get(pk="youth")
    assert (youth.max_waiting, youth.name_ko) == (None, "Youth line")


@pytest.mark.parametrize("caller", STAFF)
def test_staff_create_read_change_and_delete_a_queue(caller, django_user_model):
    client = client_as(caller, django_user_model)
    created = client.post("/api/admin/queues", YOUTH, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["hours"] == YOUTH["hours"]
    assert created.json()["urgentHeadStartSeconds"] == 600 and created.json()["wrapUpSeconds"] == 60
    listed = client.get("/api/admin/queues").json()
    assert [q["queueId"] for q in listed] == [DEFAULT_QUEUE_ID, "youth"]
    assert client.get("/api/admin/queues/youth").json() == created.json()
    changed = client.patch("/api/admin/queues/youth", {"maxWaiting": 5, "hours": None}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["maxWaiting"], changed.json()["hours"], changed.json()["languages"]) == (5, None, ["ko"])
    assert client.delete("/api/admin/queues/youth").status_code == 204
    assert not Queue.objects.filter(pk="youth").exists()
    assert client.get("/api/admin/queues/youth").status_code == 404


# --- What it refuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"queueId": "Youth Line"}, "queueId"),
        ({"name": {"ko": ""}}, "name"),
        ({"name": "Youth"}, "name"),
        ({"languages": []}, "languages"),
        ({"languages": ["korean language"]}, "languages"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"hours": [{"day": 7, "opens": "09:00", "closes": "22:00"}]}, "hours"),
        ({"hours": [{"day": 0, "opens": "25:00", "closes": "22:00"}]}, "hours"),
        ({"hours": "9-22"}, "hours"),
        ({"closedDates": ["2026-13-01"]}, "closedDates"),
        ({"maxWaiting": 0}, "maxWaiting"),
        ({"overflowAfterSeconds": None}, "overflowQueueId"),
        ({"overflowQueueId": "youth"}, "overflowQueueId"),
        ({"urgentHeadStartSeconds": -1}, "urgentHeadStartSeconds"),
        ({"wrapUpSeconds": 3601}, "wrapUpSeconds"),
        ({"alternatives": [{"label": {"en": "Call us"}}]}, "alternatives[0]"),
        ({"alternatives": [{"label": {"en": "Web"}, "url": "ftp://x"}]}, "alternatives[0].url"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_setting_is_a_400_naming_its_field_and_creates_nothing(staff, change, field):
    response = staff.post("/api/admin/queues", {**YOUTH, **change}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid_queue", field)
    assert isinstance(body["detail"], str) and body["detail"]
    assert list(Queue.objects.values_list("queue_id", flat=True)) == [DEFAULT_QUEUE_ID]


def test_a_body_that_is_not_an_object_is_a_400_on_the_body(staff):
    response = staff.post("/api/admin/queues", [YOUTH], format="json")
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("invalid_queue", "body")


def test_a_bad_patch_is_a_400_and_leaves_the_queue_as_it_was(staff):
    create(staff, YOUTH)
    response = staff.patch("/api/admin/queues/youth", {"maxWaiting": 3, "hours": [{"day": 0}]}, format="json")
    assert (response.status_code, response.json()["field"]) == (400, "hours")
    youth = Queue.objects.get(pk="youth")
    assert (youth.max_waiting, youth.hours) == (None, YOUTH["hours"])


def test_a_queue_id_cannot_change(staff):
    create(staff, YOUTH)
    response = staff.patch("/api/admin/queues/youth", {"queueId": "teens"}, format="json")
    assert (response.status_code, response.json()["field"]) == (400, "queueId")
    assert not Queue.objects.filter(pk="teens").exists()


def test_overflowing_into_a_queue_that_does_not_exist_is_refused(staff):
    response = staff.post("/api/admin/queues", {**YOUTH, "overflowQueueId": "nowhere"}, format="json")
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("unknown_queue", "overflowQueueId")


def test_an_overflow_cycle_is_refused_however_long(staff):
    create(staff, YOUTH)  # youth -> general
    create(
        staff, {"queueId": "crisis", "name": {"en": "Crisis"}, "overflowQueueId": "youth", "overflowAfterSeconds": 60}
    )
    # general -> crisis would close general -> crisis -> youth -> general.
    response = staff.patch(
        f"/api/admin/queues/{DEFAULT_QUEUE_ID}",
        {"overflowQueueId": "crisis", "overflowAfterSeconds": 300},
        format="json",
    )
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("invalid_queue", "overflowQueueId")
    assert Queue.objects.get(pk=DEFAULT_QUEUE_ID).overflow_queue_id is None


def test_creating_a_queue_id_that_exists_is_a_409(staff):
    create(staff, YOUTH)
    response = staff.post("/api/admin/queues", YOUTH, format="json")
    assert (response.status_code, response.json()["error"]) == (409, "queue_exists")


def test_the_default_queue_cannot_be_deleted(staff):
    response = staff.delete(f"/api/admin/queues/{DEFAULT_QUEUE_ID}")
    assert (response.status_code, response.json()["error"]) == (409, "default_queue")
    assert Queue.objects.filter(pk=DEFAULT_QUEUE_ID).exists()


def test_a_queue_with_waiting_customers_or_a_history_is_not_deleted(staff):
    create(staff, {**YOUTH, "hours": None})
    visit = services.registration_join(queue_id="youth").registration
    response = staff.delete("/api/admin/queues/youth")
    assert (response.status_code, response.json()["error"]) == (409, "queue_in_use")
    services.registration_cancel(registration=visit)
    response = staff.delete("/api/admin/queues/youth")
    assert (response.status_code, response.json()["error"]) == (409, "queue_has_history")
    assert Queue.objects.filter(pk="youth").exists()


# --- What a change keeps ----------------------------------------------------------------------------


def test_a_patch_keeps_every_waiting_customer_in_place_and_tells_the_hubs(
    staff, published, django_capture_on_commit_callbacks
):
    create(staff, {**YOUTH, "hours": None})
    visits = [services.registration_join(queue_id="youth", display_name=f"guest{i}").registration for i in range(3)]
    before = list(Registration.objects.filter(queue_id="youth").values_list("id", "status", "virtual_arrival"))
    # Close it, cap it below the line, add a language, drop the overflow: nobody waiting is lost.
    change = {"hours": [], "maxWaiting": 1, "languages": ["ko", "en"], "overflowQueueId": None}
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.patch("/api/admin/queues/youth", {**change, "overflowAfterSeconds": None}, format="json")
    assert response.status_code == 200, response.content
    after = list(Registration.objects.filter(queue_id="youth").values_list("id", "status", "virtual_arrival"))
    assert after == before and {status for _, status, _ in after} == {"WAITING"}
    assert [selectors.registration_rank(registration=v) for v in visits] == [1, 2, 3]
    changes = [m for g, m in published if g == events.QUEUE_GROUP]
    assert changes[-1]["queues"] == ["youth"] and changes[-1]["reason"] == "queue_configured"


def test_the_openapi_schema_documents_the_staff_paths(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    queues = next(p for p in paths if p.startswith("/api/admin/queues/"))
    counselor = next(p for p in paths if p.startswith("/api/admin/counselors/"))
    assert set(paths["/api/admin/queues"]) >= {"get", "post"}
    assert set(paths[queues]) >= {"get", "patch", "delete"}
    assert set(paths["/api/admin/counselors"]) >= {"get"}
    assert set(paths[counselor]) >= {"patch"}
    patch = paths[queues]["patch"]
    assert {"200", "400", "403", "404"} <= set(patch["responses"])
    assert "staff_only" in patch["responses"]["403"]["description"]
