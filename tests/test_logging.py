"""Structured logs: every domain event as a JSON line with its ids, and never a secret.

The in-process tests format each record with the formatter and filter that
``settings.LOGGING`` configures for ``HEARO_LOG_FORMAT=json``; the last ones
read what real Daphne and Celery processes print.
"""

import io
import json
import logging
import logging.config
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from common.logs import REDACTED, PlainFormatter, RedactSecrets
from hearo.asgi import application  # django.setup() configures logging again: before any test
from matching import counselors, matcher
from matching.models import Counselor
from queues import leases
from queues import services as queue_services
from tests.conftest import bearer
from tests.support.processes import celery_worker, daphne
from tests.support.stomp_ws import StompWs

ROOT = Path(__file__).resolve().parent.parent
C = Counselor.Status
# What a line of Daphne's own access log looks like (Daphne writes it to stdout
# itself, outside the logging module): 'host - - [date] "REQUEST" status size'.
ACCESS_LINE = re.compile(r'^\S+ - - \[[^\]]+\] "[^"]*" \S+ \S+$')


class JsonLog:
    """Lines written by a handler built like the configured one, in JSON."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines()]  # every line must parse

    def events(self, event: str, **fields) -> list[dict]:
        return [r for r in self.records() if r.get("event") == event and fields.items() <= r.items()]


def configured_handler(stream, log_format: str = "json") -> logging.Handler:
    """Return a handler with the formatter and the filter settings.LOGGING names."""
    from django.conf import settings

    configurator = logging.config.DictConfigurator({"version": 1})
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configurator.configure_formatter(dict(settings.LOGGING["formatters"][log_format])))
    handler.addFilter(configurator.configure_filter(dict(settings.LOGGING["filters"]["redact"])))
    return handler


@pytest.fixture
def json_log():
    """Capture every record the root logger handles as the JSON lines production prints."""
    log = JsonLog()
    handler = configured_handler(log.stream)
    root = logging.getLogger()
    # First in line, so its filter is the first to see each record unscrubbed.
    root.handlers.insert(0, handler)
    yield log
    root.removeHandler(handler)


@pytest.fixture
def real_secrets(settings) -> dict[str, str]:
    """Replace the development secrets with long random ones the output can be searched for."""
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.LIVEKIT_API_SECRET = secrets.token_urlsafe(40)
    return {"SECRET_KEY": settings.SECRET_KEY, "LIVEKIT_API_SECRET": settings.LIVEKIT_API_SECRET}


# --- (a, b) a whole visit, in process --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_visit_logs_every_event_with_its_ids_and_no_secret(
    real_secrets, api, join, counselor, json_log, published, settings
):
    settings.HEARO_JOIN_RATE = "4/d"  # a day: no window rolls over mid-test
    found = dict(real_secrets, password="s3cret-pass-1")
    key = api.post("/api/auth/token", {"username": "alice", "password": "s3cret-pass-1"}, format="json")
    found["counselor key"] = key.json()["token"]
    staff = APIClient()
    staff.credentials(HTTP_AUTHORIZATION=f"Token {found['counselor key']}")
    assert staff.post("/api/counselor/status", {"status": "AVAILABLE"}, format="json").status_code == 200

    joined = join("Mina")
    found["customer token"] = joined["token"]
    assert api.post("/api/queue/heartbeat", **bearer(joined["token"])).status_code == 200
    (match_id,) = matcher.match_pass().matched
    customer_room = api.post("/api/livekit/token", {}, format="json", **bearer(joined["token"]))
    counselor_room = staff.post("/api/livekit/token", {}, format="json")
    found["customer JWT"], found["counselor JWT"] = customer_room.json()["token"], counselor_room.json()["token"]
    assert api.post(f"/api/matches/{match_id}/joined", **bearer(joined["token"])).status_code == 200
    assert staff.post(f"/api/matches/{match_id}/joined").status_code == 200
    assert staff.post(f"/api/matches/{match_id}/complete").status_code == 200
    assert staff.post("/api/counselor/status", {"status": "AWAY"}, format="json").status_code == 200

    left = join("Jun")
    found["cancelled token"] = left["token"]
    assert api.post("/api/queue/cancel", **bearer(left["token"])).status_code == 200
    ghost = join("Ari")
    found["ghost token"] = ghost["token"]
    leases.lease_drop("registration", ghost["registrationId"])  # the browser was closed
    later = timezone.now() + timedelta(seconds=settings.HEARO_LEASE_SECONDS + 1)
    assert matcher.match_pass(now=later).expired == 1
    assert api.post("/api/queue/join", {}, format="json").status_code == 201
    assert api.post("/api/queue/join", {}, format="json").status_code == 429  # the fifth join from 127.0.0.1

    records = json_log.records()
    assert all({"timestamp", "level", "logger", "message"} <= r.keys() for r in records)
    visit = {"registration_id": joined["registrationId"], "customer_id": joined["customerId"]}
    match = {"match_id": match_id, "counselor_id": counselor.counselor_id}
    assert json_log.events("registration.joined", **visit)
    assert json_log.events("match.made", **visit, **match)
    assert {r["side"] for r in json_log.events("match.joined", **visit, **match)} == {"customer", "counselor"}
    assert json_log.events("match.in_call", **visit, **match)
    assert json_log.events("match.ended", match_id=match_id, reason="completed")
    assert json_log.events("registration.completed", **visit, reason="completed")
    statuses = [r["status"] for r in json_log.events("counselor.status", counselor_id=counselor.counselor_id)]
    assert statuses == ["AVAILABLE", "BUSY", "WRAP_UP", "AWAY"]  # a completed call: wrap-up first
    assert json_log.events("registration.cancelled", registration_id=left["registrationId"], reason="cancelled")
    assert json_log.events("registration.expired", registration_id=ghost["registrationId"], reason="lease_expired")
    (limited,) = [r for r in records if r.get("status_code") == 429]
    assert (limited["level"], limited["logger"]) == ("WARNING", "django.request")
    assert limited["request"] == "POST /api/queue/join"

    output = json_log.text()
    assert [name for name, value in found.items() if value in output] == []


# --- (c) the filter on crafted records ----------------------------------------------------------


def scrubbed(msg, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("hearo.test", logging.INFO, __file__, 1, msg, args or None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    assert RedactSecrets().filter(record) is True
    return record


def test_it_scrubs_a_bearer_token_passed_as_an_argument_and_keeps_the_rest():
    token = secrets.token_urlsafe(32)
    record = scrubbed("refused %s from %s", f"Authorization: Bearer {token}", "10.0.0.7")
    assert record.getMessage() == f"refused Authorization: Bearer {REDACTED} from 10.0.0.7"


@pytest.mark.parametrize(
    "text",
    [
        "Header line b'authorization:bearer {token}\\rx' has no name",  # a STOMP error echoing the header
        "GET /api/queue/rank?token={token}&v=2",
        "JoinResult(registration=<Registration: 7>, token='{token}', created=True)",
        '{{"token": "{token}", "rank": 1}}',
        "{token}",  # bare: the shape of secrets.token_urlsafe(32)
    ],
)
def test_it_scrubs_a_customer_token_wherever_it_stands(text):
    token = secrets.token_urlsafe(32)
    message = scrubbed(text.format(token=token)).getMessage()
    assert token not in message and REDACTED in message


def test_it_scrubs_counselor_keys_jwts_and_url_passwords():
    key = secrets.token_hex(20)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXN0b21lci14In0.c2lnbmF0dXJlLWJ5dGVz"
    record = scrubbed(
        "Authorization: Token %s, room %s, broker redis://:hunter2hunter2@redis:6379/0", key, jwt, livekit=jwt
    )
    assert record.getMessage() == (
        f"Authorization: Token {REDACTED}, room {REDACTED}, broker redis://:{REDACTED}@redis:6379/0"
    )
    assert record.livekit == REDACTED


def test_it_leaves_ordinary_lines_alone():
    line = "STOMP ERROR authentication failed: unknown or revoked token (match 12, counselor_x1Y2z3)"
    assert scrubbed(line, registration_id=7, status="WAITING").getMessage() == line


def test_it_scrubs_the_configured_secrets_from_messages_extras_and_tracebacks(settings):
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.LIVEKIT_API_SECRET = secrets.token_urlsafe(40)
    try:
        raise RuntimeError(f"signing with {settings.LIVEKIT_API_SECRET} failed")
    except RuntimeError:
        record = logging.LogRecord("hearo.test", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    record.detail = {"key": settings.SECRET_KEY, "passcode": "guest", "nested": [settings.LIVEKIT_API_SECRET]}
    RedactSecrets().filter(record)
    handler = configured_handler(io.StringIO())
    line = handler.format(record)
    assert settings.SECRET_KEY not in line and settings.LIVEKIT_API_SECRET not in line
    parsed = json.loads(line)
    assert "RuntimeError: signing with [redacted] failed" in parsed["exc_info"]
    assert parsed["detail"] == {"key": REDACTED, "passcode": REDACTED, "nested": [REDACTED]}


def test_a_request_extra_is_logged_without_its_query_string():
    request = RequestFactory().get(f"/api/queue/rank?t={secrets.token_hex(8)}")
    assert scrubbed("Unauthorized: %s", request.path, request=request).request == "GET /api/queue/rank"


def test_a_line_with_a_broken_format_is_still_written():
    assert scrubbed("%d waiting", "many").getMessage() == "%d waiting ('many',)"


def test_the_plain_format_appends_the_event_ids():
    stream = io.StringIO()
    handler = configured_handler(stream, "plain")
    handler.handle(scrubbed("match made", event="match.made", match_id=3, counselor_id="counselor_x"))
    assert isinstance(handler.formatter, PlainFormatter)
    assert stream.getvalue().endswith(
        " INFO hearo.test match made event=match.made match_id=3 counselor_id=counselor_x\n"
    )


# --- the WebSocket warnings ----------------------------------------------------------------------


async def stomp_say(client: WebsocketCommunicator, data: str) -> str:
    await client.send_to(text_data=data)
    return (await client.receive_output(3)).get("text") or ""


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_refused_auth_floods_and_echoed_headers_are_logged_without_the_token(json_log, settings):
    settings.HEARO_FRAMES_PER_SECOND = 1  # a burst of two frames, then ERROR
    joined = await database_sync_to_async(queue_services.registration_join)(display_name="Mina")
    connect = "CONNECT\naccept-version:1.2\nheart-beat:0,0\n{auth}\n\n\x00"
    headers = [(b"origin", b"http://127.0.0.1:8000")]

    forged = WebsocketCommunicator(application, "/ws/stomp", headers=headers)
    await forged.connect()
    assert (await stomp_say(forged, connect.format(auth=f"Authorization:Bearer {'x' * 43}"))).startswith("ERROR")
    echoed = WebsocketCommunicator(application, "/ws/stomp", headers=headers)
    await echoed.connect()
    bare_cr = connect.format(auth=f"Authorization:Bearer {joined.token}\rx")
    assert joined.token in await stomp_say(echoed, bare_cr)  # the ERROR frame tells the client its own header
    flooder = WebsocketCommunicator(application, "/ws/stomp", headers=headers)
    await flooder.connect()
    assert (await stomp_say(flooder, connect.format(auth=f"Authorization:Bearer {joined.token}"))).startswith(
        "CONNECTED"
    )
    assert (await stomp_say(flooder, "\n\n\n")).startswith("ERROR")
    for client in (forged, echoed, flooder):
        await client.disconnect()

    (refused,) = json_log.events("ws.auth_refused")
    assert (refused["level"], refused["tier"], refused["path"]) == ("WARNING", "stomp", "/ws/stomp")
    customer = {"customer_id": joined.registration.customer.customer_id, "registration_id": joined.registration.id}
    (flood,) = json_log.events("ws.rate_limited", **customer)
    assert flood["level"] == "WARNING"
    assert any("Bare CR in header line" in r["message"] for r in json_log.records())
    assert joined.token not in json_log.text()


# --- HEARO_LOG_FORMAT ----------------------------------------------------------------------------


def settings_in_subprocess(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HEARO_", "DATABASE_URL", "REDIS_URL"))}
    code = "import hearo.settings as s; print(s.HEARO_LOG_FORMAT, s.LOGGING['handlers']['console']['formatter'])"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=60
    )


def test_logs_are_plain_in_development_and_json_in_production():
    assert settings_in_subprocess().stdout.split() == ["plain", "plain"]
    production = settings_in_subprocess(
        HEARO_PRODUCTION="1", SECRET_KEY=secrets.token_urlsafe(50), LIVEKIT_API_SECRET=secrets.token_urlsafe(40)
    )
    assert production.stdout.split() == ["json", "json"], production.stderr
    assert settings_in_subprocess(HEARO_LOG_FORMAT=" JSON ").stdout.split() == ["json", "json"]


def test_a_bad_log_format_stops_start_up_naming_the_variable():
    result = settings_in_subprocess(HEARO_LOG_FORMAT="yaml")
    assert result.returncode != 0
    assert "HEARO_LOG_FORMAT must be 'plain' or 'json', got 'yaml'" in result.stderr


# --- (d) real processes --------------------------------------------------------------------------


def call(port: int, method: str, path: str, token: str | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}", method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def json_lines(output: str) -> list[dict]:
    """Parse every line that is not Daphne's access log; fail on any other text."""
    return [json.loads(line) for line in output.splitlines() if line and not ACCESS_LINE.match(line)]


def wait_for_event(proc, event: str, parse=json_lines, timeout: float = 10.0) -> list[dict]:
    """Return the process's lines about ``event`` once there is one."""
    deadline = time.monotonic() + timeout
    while not (found := [r for r in parse(proc.output()) if r.get("event") == event]):
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    return found


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_daphne_node_writes_json_lines_and_no_token(tmp_path):
    with daphne(tmp_path, "json-node", HEARO_LOG_FORMAT="json") as (port, proc):
        joined = call(port, "POST", "/api/queue/join")
        token = joined["token"]
        assert call(port, "POST", "/api/queue/heartbeat", token)["leaseExpiresAt"]
        client = StompWs(port)
        assert client.connect_customer(token).command == "CONNECTED"
        client.close()
        echoed = StompWs(port)
        echoed.send("CONNECT", {"accept-version": "1.2", "Authorization": f"Bearer {token}\rx"})
        assert echoed.frame().command == "ERROR"
        echoed.close()
        assert call(port, "POST", "/api/queue/cancel", token) == {"status": "CANCELLED"}
        (left,) = wait_for_event(proc, "registration.cancelled")
        output = proc.output()
    records = json_lines(output)
    assert all({"timestamp", "level", "logger", "message"} <= r.keys() for r in records)
    visit = (joined["registrationId"], joined["customerId"])
    arrived = [r for r in records if r.get("event") == "registration.joined"]
    assert [(r["registration_id"], r["customer_id"]) for r in arrived] == [visit]
    assert (left["registration_id"], left["customer_id"]) == visit
    assert any("Bare CR in header line" in r["message"] for r in records)  # the echo was logged, scrubbed
    assert token not in output


def worker_lines(output: str) -> list[dict]:
    """Parse the worker's log lines (its start-up banner is printed, not logged)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_logs_the_match_it_makes_as_json(redis_url, settings, tmp_path):
    settings.HEARO_MATCH_ON_EVENTS = True  # the real trigger, to the real broker
    with celery_worker(tmp_path, "json-worker", HEARO_LOG_FORMAT="json") as worker:
        visit = queue_services.registration_join(display_name="Mina").registration
        counselor = counselors.counselor_create(username="bo", password=None)
        counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)
        (match,) = wait_for_event(worker, "match.made", parse=worker_lines)
        output = worker.output()
    assert (match["registration_id"], match["counselor_id"]) == (visit.id, counselor.counselor_id)
    assert match["logger"] == "matching.matcher"
    # Celery kept the configured handler: its own lines are JSON too.
    assert [r["logger"] for r in worker_lines(output) if r["message"].endswith(" ready.")] == ["celery.apps.worker"]
