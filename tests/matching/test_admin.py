"""The Django admin as staff use it: queues checked as the REST API checks them, skills set through their service."""

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from common import events
from matching import counselors
from matching.admin import CounselorAdmin
from matching.models import Counselor
from queues import services as queue_services
from queues.models import DEFAULT_QUEUE_ID, Queue
from tests.queues.test_staff_api import YOUTH

pytestmark = pytest.mark.django_db

PASSWORD = "demo-pass-123"
ADD_QUEUE = "/admin/queues/queue/add/"


@pytest.fixture
def admin_client(monkeypatch) -> Client:
    """The demo supervisor (staff, not a superuser), logged in to the admin."""
    monkeypatch.setenv("HEARO_DEMO_PASSWORD", PASSWORD)
    call_command("ensure_demo_counselor", stdout=io.StringIO())
    client = Client()
    assert client.login(username="supervisor", password=PASSWORD)
    return client


def queue_form(**change) -> dict:
    """Return the admin's add form for the youth line of the README (09:00-22:00, overflow after 15 minutes)."""
    form = {
        "queue_id": "youth",
        "name_ko": "청소년 상담",
        "name_en": "Youth line",
        "languages": "ko",
        "timezone": "Asia/Seoul",
        "hours": json.dumps(YOUTH["hours"]),
        "closed_dates": "[]",
        "max_waiting": "",
        "overflow_queue": DEFAULT_QUEUE_ID,
        "overflow_after_seconds": "900",
        "urgent_head_start_seconds": "600",
        "wrap_up_seconds": "60",
        "alternatives": json.dumps([{"label": {"ko": "청소년상담 1388", "en": "Youth helpline"}, "phone": "1388"}]),
    }
    return {**form, **change}


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    form = response.context["adminform"].form
    return {field: list(errors) for field, errors in form.errors.items()}


def test_staff_create_a_queue_in_the_admin_and_the_hubs_hear_it(
    admin_client, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ADD_QUEUE, queue_form())
    assert response.status_code == 302, form_errors(response)
    youth = Queue.objects.get(pk="youth")
    assert youth.languages == ["ko"] and youth.hours == YOUTH["hours"]
    assert (youth.overflow_queue_id, youth.overflow_after_seconds) == (DEFAULT_QUEUE_ID, 900)
    assert youth.alternatives[0]["phone"] == "1388"
    changes = [m for g, m in published if g == events.QUEUE_GROUP]
    assert changes[-1]["queues"] == ["youth"]


def test_the_add_form_explains_the_json_settings_with_an_example(admin_client):
    page = admin_client.get(ADD_QUEUE).content.decode()
    assert "0 = Monday" in page and "<code>[{&quot;day&quot;: 0, &quot;opens&quot;: &quot;09:00&quot;" in page
    assert "phone?" in page
    # A new queue starts from the API's defaults, not from "null" in every JSON box.
    assert 'id="id_closed_dates">\n[]</textarea>' in page and 'id="id_alternatives">\n[]</textarea>' in page


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hours": json.dumps([{"day": 7, "opens": "09:00", "closes": "22:00"}])}, "hours"),
        ({"hours": json.dumps([{"day": 0, "opens": "9am", "closes": "22:00"}])}, "hours"),
        ({"hours": "not json"}, "hours"),
        ({"closed_dates": json.dumps(["2026-02-30"])}, "closed_dates"),
        ({"languages": "ko, ko"}, "languages"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"overflow_after_seconds": ""}, "overflow_queue"),
        ({"alternatives": json.dumps([{"label": {"en": "Web"}, "url": "javascript:alert(1)"}])}, "alternatives"),
        ({"queue_id": DEFAULT_QUEUE_ID, "overflow_queue": "", "overflow_after_seconds": ""}, "queue_id"),
    ],
)
def test_a_bad_setting_is_refused_on_its_field_and_creates_nothing(admin_client, change, field):
    errors = form_errors(admin_client.post(ADD_QUEUE, queue_form(**change)))
    assert list(errors) == [field], errors
    assert not Queue.objects.filter(name_en="Youth line").exists()


def test_the_admin_refuses_what_the_rest_api_refuses(admin_client):
    """The same bad hours, both ways: the API names the field, the admin puts the same words on it."""
    bad = [{"day": 0, "opens": "25:00", "closes": "22:00"}]
    errors = form_errors(admin_client.post(ADD_QUEUE, queue_form(hours=json.dumps(bad))))
    api = admin_client.post("/api/admin/queues", {**YOUTH, "hours": bad}, content_type="application/json")
    assert api.status_code == 400 and api.json()["field"] == "hours"
    assert errors["hours"] == [api.json()["detail"].removeprefix("hours: ")]


def test_an_overflow_cycle_is_refused_on_the_overflow_field(admin_client):
    admin_client.post(ADD_QUEUE, queue_form())  # youth -> general
    change = queue_form(queue_id=DEFAULT_QUEUE_ID, overflow_queue="youth", overflow_after_seconds="60")
    errors = form_errors(admin_client.post(f"/admin/queues/queue/{DEFAULT_QUEUE_ID}/change/", change))
    assert list(errors) == ["overflow_queue"]
    assert Queue.objects.get(pk=DEFAULT_QUEUE_ID).overflow_queue_id is None


def test_an_edit_keeps_the_waiting_customers(admin_client):
    admin_client.post(ADD_QUEUE, queue_form(hours=""))
    waiting = queue_services.registration_join(queue_id="youth").registration
    response = admin_client.post("/admin/queues/queue/youth/change/", queue_form(hours="[]", max_waiting="1"))
    assert response.status_code == 302, form_errors(response)
    youth = Queue.objects.get(pk="youth")
    assert (youth.hours, youth.max_waiting, youth.queue_id) == ([], 1, "youth")
    waiting.refresh_from_db()
    assert (waiting.status, waiting.queue_id) == ("WAITING", "youth")


def test_the_default_queue_cannot_be_deleted_in_the_admin(admin_client):
    assert admin_client.get(f"/admin/queues/queue/{DEFAULT_QUEUE_ID}/delete/").status_code == 403
    assert admin_client.post(f"/admin/queues/queue/{DEFAULT_QUEUE_ID}/delete/", {"post": "yes"}).status_code == 403
    assert Queue.objects.filter(pk=DEFAULT_QUEUE_ID).exists()


def test_a_queue_with_customers_is_not_deleted_and_the_page_says_why(admin_client):
    admin_client.post(ADD_QUEUE, queue_form(hours=""))
    queue_services.registration_join(queue_id="youth")
    page = admin_client.get("/admin/queues/queue/youth/delete/")
    assert "customers are waiting or in a call in this queue" in page.content.decode()
    admin_client.post("/admin/queues/queue/youth/delete/", {"post": "yes"})
    assert Queue.objects.filter(pk="youth").exists()


def test_an_unused_queue_is_deleted_in_the_admin(admin_client):
    admin_client.post(ADD_QUEUE, queue_form(overflow_queue="", overflow_after_seconds=""))
    response = admin_client.post("/admin/queues/queue/youth/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Queue.objects.filter(pk="youth").exists()


# --- Counselors ------------------------------------------------------------------------------------


@pytest.fixture
def bob(db) -> Counselor:
    Queue.objects.create(queue_id="youth", name_ko="청소년 상담", name_en="Youth line", languages=["ko"])
    return counselors.counselor_create(username="bob", password="s3cret-pass-1", display_name="Bob")


def counselor_form(**change) -> dict:
    return {"display_name": "Bob", "queues": [DEFAULT_QUEUE_ID], "languages": ["ko", "en"], **change}


def change_url(counselor: Counselor) -> str:
    return f"/admin/matching/counselor/{counselor.pk}/change/"


def test_the_counselor_list_shows_queues_and_languages(admin_client, bob):
    page = admin_client.get("/admin/matching/counselor/").content.decode()
    assert "general" in page and "ko, en" in page


def test_skills_set_in_the_admin_act_as_the_rest_patch(
    admin_client, bob, published, monkeypatch, django_capture_on_commit_callbacks
):
    passes = []
    monkeypatch.setattr("matching.triggers.request_match_pass", lambda **kw: passes.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change_url(bob), counselor_form(queues=["youth"], languages=["ko"]))
    assert response.status_code == 302, form_errors(response)
    bob.refresh_from_db()
    assert ([q.queue_id for q in bob.queues.all()], bob.languages) == (["youth"], ["ko"])
    told = published.bodies(events.counselor_group(bob.counselor_id))
    assert [body["type"] for body in told] == ["SKILLS"]
    assert passes == [{}]


def test_a_language_none_of_the_chosen_queues_serves_is_refused_on_languages(admin_client, bob):
    errors = form_errors(admin_client.post(change_url(bob), counselor_form(queues=["youth"], languages=["ko", "en"])))
    assert list(errors) == ["languages"]
    bob.refresh_from_db()
    assert bob.languages == ["ko", "en"]


def test_renaming_in_the_admin_neither_overwrites_the_status_nor_tells_the_dashboard(
    admin_client, bob, published, monkeypatch, django_capture_on_commit_callbacks
):
    save_form = CounselorAdmin.save_form

    def matcher_meanwhile(self, request, form, change):
        # Another process changes the status after the admin loaded the row, before it saves.
        Counselor.objects.filter(pk=bob.pk).update(status=Counselor.Status.BUSY)
        return save_form(self, request, form, change)

    monkeypatch.setattr(CounselorAdmin, "save_form", matcher_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change_url(bob), counselor_form(display_name="Robert"))
    assert response.status_code == 302, form_errors(response)
    bob.refresh_from_db()
    assert (bob.display_name, bob.status) == ("Robert", Counselor.Status.BUSY)
    assert published.bodies(events.counselor_group(bob.counselor_id)) == []
