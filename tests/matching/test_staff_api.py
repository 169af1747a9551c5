"""The staff API of the counselors (/api/admin/counselors): who may call it, what it refuses, what a change does."""

import pytest

from common import events
from matching import counselors, matcher
from matching.models import Counselor, Match
from queues import services as queue_services
from queues.models import DEFAULT_QUEUE_ID, Queue
from tests.queues.test_staff_api import NOT_STAFF, STAFF, client_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def youth(db) -> Queue:
    """A Korean-only youth line beside the default queue (which serves ko and en)."""
    return Queue.objects.create(queue_id="youth", name_ko="청소년 상담", name_en="Youth line", languages=["ko"])


@pytest.fixture
def bob(db) -> Counselor:
    return counselors.counselor_create(username="bob", password="s3cret-pass-1", display_name="Bob")


@pytest.fixture
def staff(django_user_model):
    return client_as("staff token", django_user_model)


def skills(counselor: Counselor) -> tuple[list[str], list[str]]:
    counselor.refresh_from_db()
    return sorted(q.queue_id for q in counselor.queues.all()), counselor.languages


@pytest.mark.parametrize("caller", NOT_STAFF)
@pytest.mark.parametrize("method", ["get list", "patch"])
def test_anyone_but_staff_gets_a_json_403_and_changes_nothing(caller, method, bob, youth, django_user_model):
    client = client_as(caller, django_user_model)
    if method == "patch":
        body = {"queues": ["youth"], "languages": ["ko"]}
        response = client.patch(f"/api/admin/counselors/{bob.counselor_id}", body, format="json")
    else:
        response = client.get("/api/admin/counselors")
    assert response.status_code == 403
    assert response.json()["error"] == "staff_only"
    assert skills(bob) == ([DEFAULT_QUEUE_ID], ["ko", "en"])


@pytest.mark.parametrize("caller", STAFF)
def test_staff_list_counselors_with_their_skills(caller, bob, django_user_model):
    response = client_as(caller, django_user_model).get("/api/admin/counselors")
    assert response.status_code == 200
    listed = {c["username"]: c for c in response.json()}
    assert listed["bob"]["counselorId"] == bob.counselor_id
    assert (listed["bob"]["queues"], listed["bob"]["languages"]) == ([DEFAULT_QUEUE_ID], ["ko", "en"])


@pytest.mark.parametrize("caller", STAFF)
def test_staff_set_skills_the_dashboard_hears_it_and_the_matcher_looks_again(
    caller, bob, youth, django_user_model, published, requested, django_capture_on_commit_callbacks
):
    client = client_as(caller, django_user_model)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(
            f"/api/admin/counselors/{bob.counselor_id}", {"queues": ["youth"], "languages": ["ko"]}, format="json"
        )
    assert response.status_code == 200, response.content
    assert (response.json()["queues"], response.json()["languages"]) == (["youth"], ["ko"])
    assert skills(bob) == (["youth"], ["ko"])
    told = published.bodies(events.counselor_group(bob.counselor_id))
    assert [body["type"] for body in told] == ["SKILLS"]
    assert requested == ["pass"]


def test_languages_alone_keep_the_queues(staff, bob):
    response = staff.patch(f"/api/admin/counselors/{bob.counselor_id}", {"languages": ["en"]}, format="json")
    assert response.status_code == 200
    assert skills(bob) == ([DEFAULT_QUEUE_ID], ["en"])


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({}, "invalid_skills", "body"),
        (["youth"], "invalid_skills", "body"),
        ({"skills": ["youth"]}, "invalid_skills", "skills"),
        ({"queues": "youth"}, "invalid_skills", "queues"),
        ({"languages": ["ko", "ko"]}, "invalid_skills", "languages"),
        ({"languages": [1]}, "invalid_skills", "languages"),
        ({"queues": ["nowhere"]}, "unknown_queue", "queues"),
        # The youth line serves Korean only: English would be a skill nobody could use.
        ({"queues": ["youth"], "languages": ["ko", "en"]}, "unsupported_language", "languages"),
        ({"queues": ["youth"]}, "unsupported_language", "languages"),
    ],
)
def test_a_bad_body_is_a_400_naming_its_field_and_changes_nothing(staff, bob, youth, body, error, field):
    response = staff.patch(f"/api/admin/counselors/{bob.counselor_id}", body, format="json")
    assert response.status_code == 400, response.content
    assert (response.json()["error"], response.json()["field"]) == (error, field)
    assert isinstance(response.json()["detail"], str)
    assert skills(bob) == ([DEFAULT_QUEUE_ID], ["ko", "en"])


def test_an_unknown_counselor_is_a_404(staff):
    response = staff.patch("/api/admin/counselors/counselor_nobody", {"languages": ["ko"]}, format="json")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


def test_after_the_patch_the_matcher_gives_the_counselor_only_its_new_line(staff, bob, youth):
    general = queue_services.registration_join(display_name="general guest").registration
    young = queue_services.registration_join(display_name="youth guest", queue_id="youth").registration
    staff.patch(f"/api/admin/counselors/{bob.counselor_id}", {"queues": ["youth"], "languages": ["ko"]}, format="json")
    counselors.counselor_set_status(counselor=bob, status=Counselor.Status.AVAILABLE)
    matcher.match_pass()
    # The general guest joined first, yet only the youth line is Bob's now.
    assert Match.objects.get(counselor=bob).registration_id == young.id
    general.refresh_from_db()
    assert general.status == "WAITING"
