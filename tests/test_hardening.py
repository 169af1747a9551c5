"""Hardening over HTTP: password guessing, hostile JSON, the client address behind the proxy, headers.

The sockets' side (deadlines, the per-address cap, a quiet client's lease)
is in tests/test_hardening_sockets.py.
"""

import http.client
import io
import logging
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from django.test import Client
from rest_framework.test import APIClient

from common.clientaddr import client_ip
from common.security import OneLineRefusals
from matching import counselors
from tests.support.processes import daphne

ROOT = Path(__file__).resolve().parent.parent
RIGHT = "s3cret-pass-1"


@pytest.fixture
def alice(db):
    return counselors.counselor_create(username="alice", password=RIGHT, display_name="Alice")


@pytest.fixture
def later(monkeypatch):
    """Move django-ratelimit's clock forward by a number of seconds."""

    class Clock:
        offset = 0.0

        def time(self) -> float:
            return time.time() + self.offset

    clock = Clock()
    monkeypatch.setattr("django_ratelimit.core.time", clock)

    def move(seconds: float) -> None:
        clock.offset += seconds

    return move


def token(username: str, password: str, *, address: str = "192.0.2.10", **extra):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/auth/token", {"username": username, "password": password}, format="json", **extra
    )


def lockouts(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == "auth.locked_out"]


# --- password guessing: POST /api/auth/token ----------------------------------------------


def test_the_token_api_locks_a_username_after_five_wrong_passwords_even_against_the_right_one(alice, caplog):
    caplog.set_level(logging.INFO)
    statuses = [token("alice", f"guess-{n}").status_code for n in range(5)]
    assert statuses == [401] * 5
    locked = token("alice", RIGHT)  # found it, but the guesser must not learn that
    assert locked.status_code == 429
    body = locked.json()
    assert body["error"] == "too_many_attempts" and body["detail"]
    assert isinstance(body["retryAfter"], int) and 0 < body["retryAfter"] <= 15 * 60
    assert locked["Retry-After"] == str(body["retryAfter"])
    assert token("alice", "guess-6").status_code == 429
    records = lockouts(caplog)
    assert len(records) == 1 and records[0].locked == "username" and records[0].username == "alice"
    assert not any("guess-" in r.getMessage() or RIGHT in r.getMessage() for r in caplog.records)


def test_the_username_is_counted_whatever_its_case(alice):
    for name in ("alice", "Alice", " ALICE", "alice", "aLice"):
        assert token(name, "wrong").status_code == 401
    assert token("alice", RIGHT).status_code == 429


def test_one_address_guessing_many_usernames_is_locked_out_by_address(alice, settings, caplog):
    settings.HEARO_LOGIN_FAILURES_PER_ADDRESS = "3/15m"
    assert [token(f"user{n}", "wrong").status_code for n in range(3)] == [401] * 3
    assert token("alice", RIGHT).status_code == 429
    assert token("alice", RIGHT, address="192.0.2.99").status_code == 200  # another address is not locked
    assert [r.locked for r in lockouts(caplog)] == ["address"]


def test_the_real_user_gets_in_with_the_right_password_once_the_window_is_over(alice, later):
    for n in range(5):
        token("alice", f"guess-{n}")
    assert token("alice", RIGHT).status_code == 429
    later(15 * 60 + 1)
    answer = token("alice", RIGHT)
    assert answer.status_code == 200 and answer.json()["token"]


def test_a_success_does_not_reset_anyone_elses_count(alice, db, settings):
    counselors.counselor_create(username="bob", password="bobs-pass-22", display_name="Bob")
    settings.HEARO_LOGIN_FAILURES_PER_ADDRESS = "5/15m"
    for _ in range(4):
        assert token("alice", "wrong").status_code == 401
    assert token("bob", "bobs-pass-22").status_code == 200  # same address, a good login
    assert token("alice", "wrong").status_code == 401  # the fifth: alice and the address are now locked
    assert token("alice", RIGHT).status_code == 429
    assert token("bob", "bobs-pass-22").status_code == 429  # the address's count was not reset either


# --- password guessing: the /accounts/login/ form ------------------------------------------


def form_login(client: Client, password: str):
    return client.post("/accounts/login/", {"username": "alice", "password": password, "next": "/counselor/"})


def test_the_login_form_locks_out_with_a_plain_message_and_lets_the_user_in_after_the_window(alice, later, caplog):
    client = Client(REMOTE_ADDR="198.51.100.4", HTTP_ACCEPT_LANGUAGE="en")
    assert [form_login(client, f"guess-{n}").status_code for n in range(5)] == [200] * 5
    locked = form_login(client, RIGHT)
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    page = locked.content.decode()
    assert "Too many failed sign-ins" in page and RIGHT not in page
    assert len(lockouts(caplog)) == 1
    later(15 * 60 + 1)
    answer = form_login(client, RIGHT)
    assert answer.status_code == 302 and answer["Location"] == "/counselor/"


def test_the_admin_login_locks_out_staff_guessing_too_and_lets_staff_in_after_the_window(db, later, caplog):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("boss", password=RIGHT, is_staff=True)
    client = Client(REMOTE_ADDR="198.51.100.5", HTTP_ACCEPT_LANGUAGE="en")

    def admin_login(password: str):
        return client.post("/admin/login/", {"username": "boss", "password": password, "next": "/admin/"})

    assert [admin_login(f"guess-{n}").status_code for n in range(5)] == [200] * 5
    locked = admin_login(RIGHT)
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    page = locked.content.decode()
    assert "Too many failed sign-ins" in page and RIGHT not in page
    assert 'id="login-form"' in page  # the admin's own login page
    assert len(lockouts(caplog)) == 1
    later(15 * 60 + 1)
    answer = admin_login(RIGHT)
    assert answer.status_code == 302 and answer["Location"] == "/admin/"
    assert client.get("/admin/login/").status_code == 302  # signed in: straight to the admin


# --- hostile JSON and oversized bodies -------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/queue/join", "/api/auth/token", "/api/counselor/status"])
def test_deeply_nested_json_is_a_400_json_error_on_every_endpoint(alice, path):
    client = APIClient()
    client.force_authenticate(alice.user)  # the counselor endpoint reads its body only once signed in
    response = client.post(path, "[" * 50000, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"] == "malformed_json"


def test_an_oversized_json_body_answers_413_in_the_error_shape(db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"displayName": "' + "x" * 2000 + '"}'
    response = APIClient().post("/api/queue/join", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_an_oversized_form_body_answers_the_json_error_shape(db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = Client().post("/accounts/login/", {"username": "a", "password": "x" * 2000})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


# --- the client address behind the proxy --------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),  # nginx's peer is the client
        ("10.0.0.2", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # a forged left part is ignored
        ("10.0.0.2", "198.51.100.7, 10.0.0.9", "198.51.100.7"),  # two trusted hops
        ("10.0.0.2", "", "10.0.0.2"),  # no header: the proxy itself
        ("10.0.0.2", "garbage, 10.0.0.9", "10.0.0.9"),  # garbage stops the walk at the last good hop
        ("203.0.113.5", "198.51.100.7", "203.0.113.5"),  # an untrusted peer's header is ignored
        (None, "198.51.100.7", "unknown"),
    ],
)
def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(settings, peer, forwarded, expected):
    import ipaddress

    settings.HEARO_TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_ip(peer, [forwarded] if forwarded else []) == expected


def joins(peer: str, forwarded: str, n: int) -> list[int]:
    client = APIClient(REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)
    return [client.post("/api/queue/join", {}, format="json").status_code for _ in range(n)]


def test_the_join_limit_is_per_customer_behind_a_trusted_proxy(db, settings):
    import ipaddress

    settings.HEARO_TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)
    settings.HEARO_JOIN_RATE = "2/m"
    assert joins("10.0.0.2", "198.51.100.1", 3) == [201, 201, 429]
    assert joins("10.0.0.2", "198.51.100.2", 1) == [201]  # another customer behind the same proxy


def test_an_untrusted_peer_cannot_dodge_the_join_limit_with_x_forwarded_for(db, settings):
    settings.HEARO_TRUSTED_PROXIES = ()
    settings.HEARO_JOIN_RATE = "2/m"
    assert joins("203.0.113.5", "198.51.100.1", 2) == [201, 201]
    assert joins("203.0.113.5", "198.51.100.2", 1) == [429]


def test_the_login_lockout_keys_on_the_forwarded_client_behind_a_trusted_proxy(alice, settings):
    import ipaddress

    settings.HEARO_TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)
    settings.HEARO_LOGIN_FAILURES_PER_ADDRESS = "2/15m"
    via = {"address": "10.0.0.2"}
    assert token("x", "wrong", HTTP_X_FORWARDED_FOR="198.51.100.1", **via).status_code == 401
    assert token("y", "wrong", HTTP_X_FORWARDED_FOR="198.51.100.1", **via).status_code == 401
    assert token("alice", RIGHT, HTTP_X_FORWARDED_FOR="198.51.100.1", **via).status_code == 429
    assert token("alice", RIGHT, HTTP_X_FORWARDED_FOR="198.51.100.2", **via).status_code == 200


def test_compose_trusts_its_own_network_and_nginx_forwards_the_client_everywhere():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    trusted = compose["x-hearo"]["environment"]["HEARO_TRUSTED_PROXIES"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert subnet in trusted
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    blocks = re.findall(r"^\s*location [^{]+\{[^}]*\}", conf, re.M)
    assert len(blocks) == 4
    for block in blocks:
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for" in block, block


# --- headers and error shapes ------------------------------------------------------------------


class Scripts(HTMLParser):
    """Collect inline scripts and inline event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._in_script = False
        self._data_block = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.inline += [f"{tag} {name}" for name in attrs if name.startswith("on")]
        if tag == "script":
            self._in_script = "src" not in attrs
            self._data_block = attrs.get("type") == "application/json"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and not self._data_block and data.strip():
            self.inline.append(data.strip()[:80])


def page(client: Client, path: str):
    response = client.get(path)
    assert response.status_code == 200, path
    return response


def test_every_page_has_a_csp_without_unsafe_inline_and_no_inline_script(alice):
    client = Client()
    pages = [page(client, "/"), page(client, "/accounts/login/")]
    client.force_login(alice.user)
    pages.append(page(client, "/counselor/"))
    for response in pages:
        policy = dict(d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'"
        assert "unsafe-inline" not in response["Content-Security-Policy"]
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        parser = Scripts()
        parser.feed(response.content.decode())
        assert parser.inline == [], parser.inline


def test_the_policy_lets_the_page_reach_the_call_server(client, settings, db):
    settings.LIVEKIT_URL = "wss://calls.example.org"
    connect = client.get("/")["Content-Security-Policy"].split("connect-src ", 1)[1].split(";")[0]
    assert {"'self'", "wss://calls.example.org", "https://calls.example.org"} <= set(connect.split())


def test_a_bad_host_header_answers_json_400(db):
    response = Client().get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


@pytest.fixture
def console():
    """Return what the configured console handler prints (its filters included)."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, OneLineRefusals) for f in h.filters))
    stream = io.StringIO()
    old = handler.setStream(stream)
    yield stream
    handler.setStream(old)


def test_a_refused_oversized_form_body_is_one_log_line_without_a_traceback(db, settings, console):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert Client().post("/accounts/login/", {"username": "a", "password": "x" * 2000}).status_code == 400
    lines = console.getvalue().splitlines()
    assert [line for line in lines if "RequestDataTooBig" in line or "exceeded" in line] == lines
    assert len(lines) == 1


def test_a_bad_host_and_an_oversized_body_each_log_one_line_from_a_real_server(tmp_path):
    with daphne(tmp_path, HEARO_MAX_BODY_BYTES="1000") as (port, proc):
        requests = (
            ("GET", "/", None, "evil.example", 400),
            ("POST", "/api/queue/join", '{"displayName": "' + "x" * 5000 + '"}', "127.0.0.1", 413),
        )
        for method, path, body, host, status in requests:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=body, headers={"Host": host, "Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == status and response.getheader("Content-Type") == "application/json"
            conn.close()
        deadline = time.monotonic() + 5
        while "request body over" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = proc.output().splitlines()
    assert not any("Traceback" in line for line in lines)
    assert len([line for line in lines if "Invalid HTTP_HOST" in line]) == 1
    assert len([line for line in lines if "request body over" in line]) == 1
