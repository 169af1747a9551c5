"""The demo users of `make run` (ensure_demo_counselor): counselor1 and the staff user supervisor."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from matching.models import Counselor

pytestmark = pytest.mark.django_db


def ensure(monkeypatch, password: str | None) -> str:
    if password is None:
        monkeypatch.delenv("HEARO_DEMO_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("HEARO_DEMO_PASSWORD", password)
    out = io.StringIO()
    call_command("ensure_demo_counselor", stdout=out)
    return out.getvalue()


def user(username: str):
    return get_user_model().objects.get(username=username)


def test_it_creates_the_counselor_and_a_staff_supervisor_with_the_demo_password(monkeypatch):
    out = ensure(monkeypatch, "demo-pass-123")
    counselor, supervisor = user("counselor1"), user("supervisor")
    assert Counselor.objects.filter(user=counselor).exists() and not counselor.is_staff
    assert supervisor.is_staff and not supervisor.is_superuser
    assert not Counselor.objects.filter(user=supervisor).exists()
    assert counselor.check_password("demo-pass-123") and supervisor.check_password("demo-pass-123")
    assert "demo-pass-123" not in out  # the environment's secret is not echoed
    assert "/admin/" in out and "/counselor/" in out


def test_the_supervisor_may_configure_queues_and_counselors_in_the_admin_and_the_api(monkeypatch):
    ensure(monkeypatch, "demo-pass-123")
    client = Client()
    assert client.login(username="supervisor", password="demo-pass-123")
    for page in ("/admin/queues/queue/add/", "/admin/queues/queue/general/change/", "/admin/matching/counselor/"):
        assert client.get(page).status_code == 200, page
    assert client.get("/admin/auth/user/").status_code == 403  # not a superuser
    token = client.post(
        "/api/auth/token", {"username": "supervisor", "password": "demo-pass-123"}, content_type="application/json"
    )
    assert token.status_code == 200
    listed = Client().get("/api/admin/queues", HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert listed.status_code == 200


def test_without_the_variable_a_new_user_gets_a_random_password_that_is_printed(monkeypatch):
    out = ensure(monkeypatch, None)
    password = out.split("password: ")[1].split()[0]
    assert len(password) >= 12
    assert user("counselor1").check_password(password) and user("supervisor").check_password(password)


def test_an_existing_demo_users_password_is_reset_when_the_variable_is_set(monkeypatch):
    ensure(monkeypatch, "first-pass-123")
    out = ensure(monkeypatch, "second-pass-456")
    assert user("counselor1").check_password("second-pass-456")
    assert user("supervisor").check_password("second-pass-456")
    assert "reset" in out
    assert Counselor.objects.count() == 1 and get_user_model().objects.count() == 2


def test_an_existing_demo_users_password_is_kept_when_the_variable_is_unset(monkeypatch):
    ensure(monkeypatch, "first-pass-123")
    out = ensure(monkeypatch, None)
    assert user("counselor1").check_password("first-pass-123")
    assert user("supervisor").check_password("first-pass-123")
    assert "unchanged" in out


def test_an_existing_supervisor_is_made_staff_again(monkeypatch):
    get_user_model().objects.create_user(username="supervisor", password="x-pass-123")
    ensure(monkeypatch, None)
    assert user("supervisor").is_staff
    assert user("supervisor").check_password("x-pass-123")
