"""Cross-tenant security in one place: nobody reaches another's visit, match or topic.

The customer matrix tries every action on a visit — subscribe to its rank
topic (STOMP over WebSocket, STOMP over SockJS, the raw JSON tier), poll its
state, cancel it, heart-beat it (the fast path and the Django view), get a
LiveKit token for its room, confirm or complete its match — with each
credential an attacker could hold:

- ``other``: a valid token of another customer, aimed at the victim's ids;
- ``guessed``: that same valid token with a made-up customerId (ids in a
  request are never trusted: the token alone says whose visit it is);
- ``stale``: the victim's own token from its earlier, ended visit;
- ``none`` and ``garbage``: no token, and a random one.

Then the counselor side, the tokens themselves (random, stored hashed) and
revocation: once a visit ends, its token reads that visit's final state (the
page shows "your session ended") and lets the customer join again; nothing else.
"""

import base64
import contextlib
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator
from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from common import events
from common.errors import Conflict
from hearo.asgi import application
from matching import counselors, handoff, matcher
from matching.models import Counselor, Match
from queues import leases
from queues import services as queue_services
from queues.models import Registration, new_customer_id
from realtime.hub import reset_hub
from realtime.stomp import Frame, Heartbeat, Parser
from tests.conftest import bearer
from tests.realtime.conftest import ORIGIN, StompClient

S = Registration.Status
C = Counselor.Status
CUSTOMER_CREDENTIALS = ("other", "guessed", "stale", "none", "garbage")


# --- the world: a victim in a match, an attacker in the queue, two counselors --------------


@dataclass(frozen=True)
class Visit:
    token: str
    customer_id: str
    registration_id: int


@dataclass(frozen=True)
class World:
    victim: Visit  # MATCHED with counselor_a in match_a
    stale: Visit  # the victim's earlier visit (cancelled): same customer, old token
    attacker: Visit  # another customer, WAITING
    counselor_a: Counselor
    key_a: str
    counselor_b: Counselor  # in its own open match with a third customer
    key_b: str
    match_a: Match


def _visit(result: queue_services.JoinResult) -> Visit:
    registration = result.registration
    return Visit(result.token, registration.customer.customer_id, registration.id)


def _counselor_available(username: str) -> tuple[Counselor, str]:
    counselor = counselors.counselor_create(username=username, password=None)
    counselor = counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)
    return counselor, Token.objects.create(user=counselor.user).key


def build_world() -> World:
    first = queue_services.registration_join()
    queue_services.registration_cancel(registration=first.registration)
    victim = queue_services.registration_join(token=first.token)  # the returning customer
    counselor_a, key_a = _counselor_available("counselor-a")
    matcher.match_pass()
    queue_services.registration_join()  # counselor B's customer
    counselor_b, key_b = _counselor_available("counselor-b")
    matcher.match_pass()
    attacker = queue_services.registration_join()
    return World(
        victim=_visit(victim),
        stale=_visit(first),
        attacker=_visit(attacker),
        counselor_a=counselor_a,
        key_a=key_a,
        counselor_b=counselor_b,
        key_b=key_b,
        match_a=Match.objects.get(counselor=counselor_a),
    )


@pytest.fixture
def world(db) -> World:
    return build_world()


def customer_token(world: World, credential: str) -> str | None:
    return {
        "other": world.attacker.token,
        "guessed": world.attacker.token,
        "stale": world.stale.token,
        "none": None,
        "garbage": secrets.token_urlsafe(32),
    }[credential]


def target_customer(world: World, credential: str) -> str:
    """Return the customerId the attacker aims at (a made-up one when guessing)."""
    return new_customer_id() if credential == "guessed" else world.victim.customer_id


def assert_victim_untouched(world: World) -> None:
    registration = Registration.objects.get(pk=world.victim.registration_id)
    match = Match.objects.get(pk=world.match_a.pk)
    assert registration.status == S.MATCHED
    assert match.ended_at is None and match.customer_joined_at is None and match.counselor_joined_at is None
    assert Counselor.objects.get(pk=world.counselor_a.pk).status == C.BUSY


# --- REST: the customer matrix --------------------------------------------------------------


def _auth(token: str | None) -> dict:
    return bearer(token) if token else {}


REST_ACTIONS = {
    "poll": lambda api, w, token, target: api.get(f"/api/queue/rank?customerId={target}", **_auth(token)),
    "cancel": lambda api, w, token, target: api.post(
        "/api/queue/cancel", {"customerId": target}, format="json", **_auth(token)
    ),
    "heartbeat": lambda api, w, token, target: api.post(
        "/api/queue/heartbeat", {"customerId": target}, format="json", **_auth(token)
    ),
    "livekit": lambda api, w, token, target: api.post(
        "/api/livekit/token", {"matchId": w.match_a.id}, format="json", **_auth(token)
    ),
    "joined": lambda api, w, token, target: api.post(f"/api/matches/{w.match_a.id}/joined", **_auth(token)),
    "complete": lambda api, w, token, target: api.post(f"/api/matches/{w.match_a.id}/complete", **_auth(token)),
}

# (action, credential): (status, what) — "own": the caller's own visit answered, never
# the victim's; "ended": the stale visit's own final state; otherwise the error code.
# Match ids are sequential, so "guessed" aims at the victim's match like "other" does.
UNAUTHORIZED = (401, "unauthorized")
REST_EXPECTED = {
    **{(action, c): UNAUTHORIZED for action in REST_ACTIONS for c in ("none", "garbage")},
    **{("complete", c): UNAUTHORIZED for c in CUSTOMER_CREDENTIALS},  # customers never complete
    ("poll", "other"): (200, "own"),
    ("poll", "guessed"): (200, "own"),
    ("poll", "stale"): (200, "ended"),
    ("cancel", "other"): (200, "own"),
    ("cancel", "guessed"): (200, "own"),
    ("cancel", "stale"): (200, "ended"),  # a retried cancel of the old visit, not the new one
    ("heartbeat", "other"): (200, "own"),
    ("heartbeat", "guessed"): (200, "own"),
    ("heartbeat", "stale"): (409, "not_active"),
    ("livekit", "other"): (403, "no_open_match"),
    ("livekit", "guessed"): (403, "no_open_match"),
    ("livekit", "stale"): (403, "no_open_match"),
    ("joined", "other"): (403, "not_a_participant"),
    ("joined", "guessed"): (403, "not_a_participant"),
    ("joined", "stale"): (403, "not_a_participant"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("credential", CUSTOMER_CREDENTIALS)
@pytest.mark.parametrize("action", list(REST_ACTIONS))
def test_a_customer_cannot_reach_another_visit_over_rest(
    api, world, action, credential, published, django_capture_on_commit_callbacks
):
    token, target = customer_token(world, credential), target_customer(world, credential)
    with django_capture_on_commit_callbacks(execute=True):
        response = REST_ACTIONS[action](api, world, token, target)
    status, what = REST_EXPECTED[(action, credential)]
    body = response.json()
    assert response.status_code == status, body
    if what == "own":
        assert_answers_own_visit(action, body, world.attacker)
    elif what == "ended":
        assert_answers_ended_visit(action, body, world.stale)
    else:
        assert body["error"] == what, body
    assert world.match_a.room_name not in response.content.decode()
    assert_victim_untouched(world)
    assert events.customer_group(world.victim.customer_id) not in published.groups()
    assert events.counselor_group(world.counselor_a.counselor_id) not in published.groups()


def assert_answers_own_visit(action: str, body: dict, caller: Visit) -> None:
    if action == "poll":
        assert (body["customerId"], body["registrationId"], body["status"]) == (
            caller.customer_id,
            caller.registration_id,
            S.WAITING,
        )
    elif action == "cancel":
        assert body == {"status": S.CANCELLED}
        assert Registration.objects.get(pk=caller.registration_id).status == S.CANCELLED
    else:
        assert set(body) == {"leaseExpiresAt"}


def assert_answers_ended_visit(action: str, body: dict, stale: Visit) -> None:
    if action == "poll":  # the ended page: "your session ended", and nothing of the new visit
        assert body["registrationId"] == stale.registration_id
        assert (body["status"], body["reason"]) == (S.CANCELLED, "cancelled")
        assert not {"roomName", "identity", "matchId", "rank"} & set(body)
    else:
        assert body == {"status": S.CANCELLED}


# --- REST: the counselor matrix ---------------------------------------------------------------

COUNSELOR_CREDENTIALS = ("other", "revoked", "deactivated", "none", "garbage")


def counselor_headers(world: World, credential: str) -> dict:
    """Return the headers counselor B's side sends (or a stranger's)."""
    if credential == "revoked":  # an API token the counselor since rotated
        Token.objects.filter(key=world.key_b).delete()
    if credential == "deactivated":  # the admin turned the account off; its token remains
        type(world.counselor_b.user).objects.filter(pk=world.counselor_b.user_id).update(is_active=False)
    key = {
        "other": world.key_b,
        "revoked": world.key_b,
        "deactivated": world.key_b,
        "none": None,
        "garbage": secrets.token_hex(20),
    }[credential]
    return {"HTTP_AUTHORIZATION": f"Token {key}"} if key else {}


COUNSELOR_ACTIONS = {
    "livekit": lambda api, w, h: api.post("/api/livekit/token", {"matchId": w.match_a.id}, format="json", **h),
    "joined": lambda api, w, h: api.post(f"/api/matches/{w.match_a.id}/joined", **h),
    "complete": lambda api, w, h: api.post(f"/api/matches/{w.match_a.id}/complete", **h),
}
BAD_API_TOKEN = (401, "authentication_failed")
COUNSELOR_EXPECTED = {
    **{(action, c): BAD_API_TOKEN for action in COUNSELOR_ACTIONS for c in ("revoked", "deactivated", "garbage")},
    **{(action, "none"): UNAUTHORIZED for action in COUNSELOR_ACTIONS},
    ("livekit", "other"): (403, "no_open_match"),  # B has an open match: just not this one
    ("joined", "other"): (403, "not_a_participant"),
    ("complete", "other"): (403, "not_your_match"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("credential", COUNSELOR_CREDENTIALS)
@pytest.mark.parametrize("action", list(COUNSELOR_ACTIONS))
def test_a_counselor_cannot_reach_another_counselors_match(
    api, world, action, credential, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = COUNSELOR_ACTIONS[action](api, world, counselor_headers(world, credential))
    assert (response.status_code, response.json()["error"]) == COUNSELOR_EXPECTED[(action, credential)]
    assert world.match_a.room_name not in response.content.decode()
    assert_victim_untouched(world)
    assert events.counselor_group(world.counselor_a.counselor_id) not in published.groups()


@pytest.mark.django_db
def test_a_stale_token_cannot_join_its_way_into_the_customers_current_visit(api, world):
    response = api.post("/api/queue/join", {}, format="json", **bearer(world.stale.token))
    assert (response.status_code, response.json()["error"]) == (409, "already_queued")
    assert world.victim.token not in response.content.decode()
    assert_victim_untouched(world)


@pytest.mark.django_db
def test_the_matched_customer_cannot_complete_its_own_call(api, world):
    response = api.post(f"/api/matches/{world.match_a.id}/complete", **bearer(world.victim.token))
    assert (response.status_code, response.json()["error"]) == UNAUTHORIZED
    assert_victim_untouched(world)


# --- the tokens themselves ----------------------------------------------------------------------


@pytest.mark.django_db
def test_tokens_carry_at_least_128_random_bits_and_never_repeat(join, settings, monkeypatch):
    settings.HEARO_JOIN_RATE = "1000/m"
    drawn: list[tuple[int, str]] = []  # (bytes asked of the CSPRNG, token made)
    real = secrets.token_urlsafe

    def token_urlsafe(nbytes: int) -> str:
        drawn.append((nbytes, real(nbytes)))
        return drawn[-1][1]

    monkeypatch.setattr(queue_services.secrets, "token_urlsafe", token_urlsafe)
    tokens = [join()["token"] for _ in range(40)]
    asked = {token: nbytes for nbytes, token in drawn}  # customer ids are drawn here too
    assert all(asked.get(token, 0) * 8 >= 128 for token in tokens)  # straight from `secrets`
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 128, token


@pytest.mark.django_db
def test_only_the_tokens_hash_is_stored_in_the_database_and_the_cache(api, join):
    token = join("Mina")["token"]
    api.post("/api/queue/heartbeat", **bearer(token))  # fills the fast path's token cache
    registration = Registration.objects.get()
    assert registration.token_hash == hashlib.sha256(token.encode()).hexdigest()
    for model in apps.get_models():
        for row in model.objects.values_list():
            assert token not in repr(row), f"{model.__name__} stores the raw token"
    for key, value in cache_entries():
        assert token not in key and token not in value, key


def cache_entries() -> list[tuple[str, str]]:
    """Return every (key, value) of this test's cache, as text."""
    if settings.REDIS_URL:
        client = cache._cache.get_client(write=False)
        keys = list(client.scan_iter(cache.make_key("*")))
        return [(k.decode(), repr(client.get(k))) for k in keys]
    return [(key, repr(value)) for key, value in cache._cache.items()]


# --- revocation: an ended visit's token ---------------------------------------------------------


async def http(method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    """Call the whole ASGI application (so the heartbeat takes its fast path)."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    payload = json.dumps(body).encode() if body is not None else b""
    communicator = HttpCommunicator(application, method, path, body=payload, headers=headers)
    response = await communicator.get_response(5)
    # Let Django finish the request as a server does (its end gives the connection back to the pool);
    # a dropped communicator cancels it instead (tests/test_database_pool.py covers that kill).
    await communicator.wait(5)
    return response["status"], json.loads(response["body"])


@pytest_asyncio.fixture
async def fresh_layer():
    channel_layers.backends.clear()
    yield
    await reset_hub()
    channel_layers.backends.clear()


def _matched_visit() -> tuple[queue_services.JoinResult, Match]:
    _counselor_available("counselor-r")
    joined = queue_services.registration_join()
    matcher.match_pass()
    return joined, Match.objects.get(registration=joined.registration)


def _end(how: str) -> queue_services.JoinResult:
    """Make a visit and end it the given way; return its join result."""
    if how == "expired":  # a WAITING visit whose lease ran out
        joined = queue_services.registration_join()
        leases.lease_drop("registration", joined.registration.id)
        later = timezone.now() + timedelta(seconds=settings.HEARO_LEASE_SECONDS + 1)
        queue_services.registration_expire_ghosts(now=later)
        return joined
    joined, match = _matched_visit()
    if how == "cancelled":
        handoff.visit_cancel(registration=joined.registration)
    else:
        handoff.match_joined(match_id=match.id, side="customer", actor="customer")
        handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
        handoff.match_complete(match_id=match.id, counselor=match.counselor)
    return joined


ENDINGS = {
    "cancelled": (S.CANCELLED, "cancelled"),
    "completed": (S.COMPLETED, "completed"),
    "expired": (S.EXPIRED, "lease_expired"),
}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", list(ENDINGS))
async def test_an_ended_visits_token_reads_its_final_state_and_nothing_else(how, fresh_layer, settings):
    ended = await database_sync_to_async(_end)(how)
    token, registration = ended.token, ended.registration
    status, body = await http("GET", "/api/queue/rank", token)
    assert status == 200 and body["registrationId"] == registration.id
    assert (body["status"], body["reason"]) == ENDINGS[how]  # the page shows "your session ended"
    assert not {"roomName", "identity", "matchId", "rank"} & set(body)

    assert await http("POST", "/api/queue/heartbeat", token) == (
        409,
        {"error": "not_active", "detail": f"registration is {body['status']}"},
    )
    settings.HEARO_HEARTBEAT_FASTPATH = False  # and the Django view answers alike
    assert (await http("POST", "/api/queue/heartbeat", token))[0] == 409
    status, refused = await http("POST", "/api/livekit/token", token, body={})
    assert (status, refused["error"]) == (403, "no_open_match")
    for transport in ("stomp", "sockjs", "raw"):
        outcome = await TRANSPORTS[transport](token, f"/topic/queue-rank/{registration.customer.customer_id}")
        assert outcome == ("error authentication failed" if transport == "raw" else "ERROR authentication failed")

    # The customer may come back: a new visit with a new token; the old one stays revoked.
    status, again = await http("POST", "/api/queue/join", token, body={})
    assert status == 201 and again["customerId"] == registration.customer.customer_id
    assert again["token"] != token
    assert (await http("POST", "/api/queue/heartbeat", token))[0] == 409
    assert (await http("POST", "/api/queue/heartbeat", again["token"]))[0] == 200


FASTPATH_EXPECTED = {"other": 200, "guessed": 200, "stale": 409, "none": 401, "garbage": 401}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("credential", CUSTOMER_CREDENTIALS)
async def test_the_heartbeat_fast_path_renews_only_the_callers_own_live_visit(credential):
    world = await database_sync_to_async(build_world)()
    target = target_customer(world, credential)
    token = customer_token(world, credential)
    status, body = await http("POST", f"/api/queue/heartbeat?customerId={target}", token, {"customerId": target})
    assert status == FASTPATH_EXPECTED[credential], body
    if status == 200:
        assert set(body) == {"leaseExpiresAt"}
    else:
        assert body["error"] == {409: "not_active", 401: "unauthorized"}[status]
    await database_sync_to_async(assert_victim_untouched)(world)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_heartbeat_racing_the_cancel_does_not_bring_the_token_back():
    joined = await database_sync_to_async(queue_services.registration_join)()
    # The Django view read the visit (still WAITING) just before the cancel committed...
    read_before = await database_sync_to_async(Registration.objects.get)(pk=joined.registration.id)
    await database_sync_to_async(queue_services.registration_cancel)(registration=joined.registration)
    with contextlib.suppress(Conflict):  # ...and renews after it: either answer is fine
        await database_sync_to_async(queue_services.registration_heartbeat)(registration=read_before)
    # but the fast path must not take the cancelled visit's token for a live one.
    assert (await http("POST", "/api/queue/heartbeat", joined.token))[0] == 409


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_of_an_ended_visit_hears_nothing_of_the_customers_next_visit(fresh_layer):
    first = await database_sync_to_async(queue_services.registration_join)()
    customer_id = first.registration.customer.customer_id
    client = StompClient()
    await client.connect(Authorization=f"Bearer {first.token}")
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    assert (await client.json())["status"] == S.WAITING
    await database_sync_to_async(queue_services.registration_cancel)(registration=first.registration)
    assert (await client.json())["status"] == S.CANCELLED  # the terminal message: the page shows it

    def come_back_and_get_matched() -> None:
        queue_services.registration_join(token=first.token)
        _counselor_available("counselor-n")
        matcher.match_pass()

    await database_sync_to_async(come_back_and_get_matched)()
    assert await client.nothing(0.5)  # the next visit's MATCHED (its room) goes to its own sockets
    await client.close()


# --- WebSockets: the customer matrix --------------------------------------------------------------


class SockJsStomp:
    """STOMP over an in-process SockJS xhr-streaming session on ``/ws/sockjs``."""

    def __init__(self) -> None:
        self.base = f"/ws/sockjs/000/{secrets.token_hex(8)}"
        self.parser = Parser()
        self.pending: list[Frame] = []
        self.stream: ApplicationCommunicator | None = None

    def _scope(self, transport: str) -> dict:
        path = f"{self.base}/{transport}"
        return {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": []}

    async def connect(self, **headers) -> Frame:
        self.stream = ApplicationCommunicator(application, self._scope("xhr_streaming"))
        await self.stream.send_input({"type": "http.request", "body": b"", "more_body": False})
        await self.send("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0", **headers})
        return await self.frame()

    async def send(self, command: str, headers: dict) -> None:
        text = "\n".join([command, *(f"{k}:{v}" for k, v in headers.items()), "", ""]) + "\x00"
        sent = ApplicationCommunicator(application, self._scope("xhr_send"))
        await sent.send_input({"type": "http.request", "body": json.dumps([text]).encode(), "more_body": False})
        assert (await sent.receive_output(3))["status"] == 204

    async def frame(self, timeout: float = 3) -> Frame:
        while not self.pending:
            message = await self.stream.receive_output(timeout)
            for line in message.get("body", b"").decode().splitlines():
                if line.startswith("a["):
                    for text in json.loads(line[1:]):
                        self.pending += [f for f in self.parser.feed(text) if not isinstance(f, Heartbeat)]
        return self.pending.pop(0)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.send_input({"type": "http.disconnect"})


async def stomp_attempt(client, token: str | None, destination: str, *, scheme: str = "Bearer") -> str:
    """CONNECT with the token (a counselor's: scheme "Token"), SUBSCRIBE; return how it ended."""
    try:
        frame = await client.connect(**({"Authorization": f"{scheme} {token}"} if token else {}))
        if frame.command == "CONNECTED":
            await client.send("SUBSCRIBE", {"id": "s", "destination": destination})
            frame = await client.frame()
        return f"{frame.command} {frame.get('message') or ''}".strip()
    finally:
        await client.close()


async def raw_attempt(token: str | None, destination: str) -> str:
    """Authenticate on the raw tier; then ask for another topic, which it has no way to name."""
    ws = WebsocketCommunicator(application, "/ws/raw", headers=[ORIGIN])
    try:
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "auth", "token": token} if token else {"type": "auth"})
        first = await ws.receive_json_from(3)
        if first.get("type") == "error":
            return f"error {first['error']}"
        own = first["customerId"]
        await ws.send_json_to({"type": "subscribe", "destination": destination})
        second = await ws.receive_json_from(3)
        return f"own {own}, then {second['type']} {second['error']}"
    finally:
        await ws.disconnect()


TRANSPORTS = {
    "stomp": lambda token, destination: stomp_attempt(StompClient(), token, destination),
    "sockjs": lambda token, destination: stomp_attempt(SockJsStomp(), token, destination),
    "raw": raw_attempt,
}


def expected_ws(world: World, transport: str, credential: str) -> str:
    if transport == "raw":
        if credential in ("other", "guessed"):
            return f"own {world.attacker.customer_id}, then error unknown message type"
        return "error authentication failed"
    return "ERROR subscription refused" if credential in ("other", "guessed") else "ERROR authentication failed"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("credential", CUSTOMER_CREDENTIALS)
@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_customer_cannot_subscribe_to_another_customers_rank(transport, credential, fresh_layer):
    world = await database_sync_to_async(build_world)()
    destination = f"/topic/queue-rank/{target_customer(world, credential)}"
    outcome = await TRANSPORTS[transport](customer_token(world, credential), destination)
    assert outcome == expected_ws(world, transport, credential)


# --- WebSockets: counselors, and the two kinds crossing ------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("credential", COUNSELOR_CREDENTIALS)
@pytest.mark.parametrize("transport", ["stomp", "sockjs"])
async def test_a_counselor_cannot_subscribe_to_another_counselors_topic(transport, credential, fresh_layer):
    world = await database_sync_to_async(build_world)()
    headers = await database_sync_to_async(counselor_headers)(world, credential)
    key = headers.get("HTTP_AUTHORIZATION", "").removeprefix("Token ") or None
    client = StompClient() if transport == "stomp" else SockJsStomp()
    topic = f"/topic/counselor/{world.counselor_a.counselor_id}"
    outcome = await stomp_attempt(client, key, topic, scheme="Token")
    expected = "ERROR subscription refused" if credential == "other" else "ERROR authentication failed"
    assert outcome == expected


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_foreign_page_cannot_ride_a_counselors_login_over_any_socket(fresh_layer):
    def logged_in_cookie() -> str:
        counselor = counselors.counselor_create(username="counselor-s", password=None)
        client = Client()
        client.force_login(counselor.user)
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    cookie = await database_sync_to_async(logged_in_cookie)()
    headers = [(b"origin", b"https://evil.example"), (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())]
    for transport in ("xhr_streaming", "xhr_send"):
        scope = {"type": "http", "method": "POST", "query_string": b"", "headers": headers}
        scope["path"] = f"/ws/sockjs/000/{secrets.token_hex(8)}/{transport}"
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b'["x"]', "more_body": False})
        assert (await communicator.receive_output(3))["status"] == 403
    for path in ("/ws/stomp", "/ws/raw", f"/ws/sockjs/000/{secrets.token_hex(8)}/websocket"):
        socket = WebsocketCommunicator(application, path, headers=headers)
        assert (await socket.connect())[0] is False, path  # cross-site WebSocket hijacking
    # Script-tag transports (JSONP) carry no Origin, and no session cookie either:
    # a Lax cookie stays off cross-site subresource requests.
    assert settings.SESSION_COOKIE_SAMESITE in ("Lax", "Strict")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_customers_and_counselors_cannot_cross_into_each_others_topics(fresh_layer):
    world = await database_sync_to_async(build_world)()
    rank_topic = f"/topic/queue-rank/{world.victim.customer_id}"
    counselor_topic = f"/topic/counselor/{world.counselor_a.counselor_id}"
    refused, unknown = "ERROR subscription refused", "ERROR authentication failed"
    # A counselor learns customer ids from MATCH_ASSIGNED; that is no key to their rank topic.
    assert await stomp_attempt(StompClient(), world.key_a, rank_topic, scheme="Token") == refused
    assert await stomp_attempt(StompClient(), world.victim.token, counselor_topic) == refused
    # A counselor's API key is no customer token, and the reverse.
    assert await stomp_attempt(StompClient(), world.key_a, rank_topic) == unknown
    assert await stomp_attempt(StompClient(), world.victim.token, counselor_topic, scheme="Token") == unknown
