"""Counselor endpoints: token and session auth, profile, status changes."""

import pytest
from rest_framework.test import APIClient

from common import events
from matching.models import Counselor, CounselorEvent

pytestmark = pytest.mark.django_db


def token_client(api, username="alice", password="s3cret-pass-1") -> APIClient:
    response = api.post("/api/auth/token", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def test_a_counselor_exchanges_a_password_for_a_token_and_reads_its_profile(api, counselor):
    me = token_client(api).get("/api/counselor/me").json()
    assert me == {
        "counselorId": counselor.counselor_id,
        "username": "alice",
        "displayName": "Alice",
        "status": "OFFLINE",
        # A new counselor serves the default queue in all its languages.
        "queues": ["general"],
        "languages": ["ko", "en"],
        "wrapUpUntil": None,
    }


def test_a_wrong_password_gets_a_json_401(api, counselor):
    response = api.post("/api/auth/token", {"username": "alice", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"] == "bad_credentials"


def test_a_user_who_is_not_a_counselor_gets_no_token(api, django_user_model):
    django_user_model.objects.create_user(username="bob", password="s3cret-pass-1")
    response = api.post("/api/auth/token", {"username": "bob", "password": "s3cret-pass-1"}, format="json")
    assert response.status_code == 403


def test_counselor_endpoints_refuse_anonymous_callers(api):
    assert api.get("/api/counselor/me").status_code == 401
    response = api.post("/api/counselor/status", {"status": "AVAILABLE"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_bad_api_token_is_a_json_401(api):
    response = api.get("/api/counselor/me", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_going_available_records_and_publishes_the_status(
    api, counselor, published, django_capture_on_commit_callbacks
):
    client = token_client(api)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/counselor/status", {"status": "AVAILABLE"}, format="json")
    assert response.json()["status"] == "AVAILABLE"
    counselor.refresh_from_db()
    assert counselor.status == Counselor.Status.AVAILABLE
    assert CounselorEvent.objects.filter(counselor=counselor, to_status="AVAILABLE").exists()
    told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert told[-1]["type"] == "STATUS" and told[-1]["status"] == "AVAILABLE"


@pytest.mark.parametrize("status", ["BUSY", "SLEEPING", 3, None])
def test_a_counselor_cannot_choose_busy_or_nonsense(api, counselor, status):
    response = token_client(api).post("/api/counselor/status", {"status": status}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_a_busy_counselor_cannot_walk_away_from_a_match(api, counselor):
    Counselor.objects.filter(pk=counselor.pk).update(status="BUSY")
    response = token_client(api).post("/api/counselor/status", {"status": "OFFLINE"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "counselor_busy"


def test_session_login_works_and_enforces_csrf(counselor):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password="s3cret-pass-1")
    assert client.get("/api/counselor/me").status_code == 200
    response = client.post("/api/counselor/status", {"status": "AVAILABLE"}, format="json")
    assert response.status_code == 403  # a session write without the CSRF token


def test_a_deactivated_counselor_is_refused(api, counselor):
    client = token_client(api)
    counselor.user.is_active = False
    counselor.user.save()
    assert client.get("/api/counselor/me").status_code == 401


def test_the_admin_creates_a_counselor_in_one_step(admin_client):
    response = admin_client.post(
        "/admin/matching/counselor/add/",
        {"username": "carol", "password": "a-long-password-9", "display_name": "Carol"},
    )
    assert response.status_code == 302, response.content[:2000]
    counselor = Counselor.objects.get(user__username="carol")
    assert counselor.display_name == "Carol" and counselor.user.check_password("a-long-password-9")
    assert admin_client.get("/admin/matching/counselor/").status_code == 200
    assert admin_client.get(f"/admin/matching/counselor/{counselor.pk}/change/").status_code == 200


def test_the_admin_deactivates_counselors(admin_client, counselor):
    admin_client.post("/admin/matching/counselor/", {"action": "deactivate", "_selected_action": [counselor.pk]})
    counselor.user.refresh_from_db()
    assert counselor.user.is_active is False


def test_admin_lists_registrations_filtered_by_status(admin_client, join):
    join("Mina")
    response = admin_client.get("/admin/queues/registration/?status__exact=WAITING&q=Mina")
    assert response.status_code == 200
    assert b"Mina" in response.content
