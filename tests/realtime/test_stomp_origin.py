"""The Origin rule: header credentials need no Origin; a session cookie needs an allowed one."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from hearo.asgi import application
from matching import counselors
from matching.models import Counselor
from realtime import auth
from realtime.stomp import Parser
from tests.realtime.conftest import ORIGIN, StompClient

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

FOREIGN = (b"origin", b"https://evil.example")


class Socket(StompClient):
    """A StompClient whose handshake headers the test chooses (StompClient always adds ORIGIN)."""

    def __init__(self, path: str = "/ws/stomp", headers=()) -> None:
        # Not super().__init__(): that would open a communicator with an Origin.
        self.ws = WebsocketCommunicator(application, path, headers=list(headers), subprotocols=["v12.stomp"])
        self.parser = Parser()
        self.pending = []


@pytest.fixture
def counselor_cookie():
    """A logged-in counselor's session cookie header, and the counselor id."""

    def make():
        counselor = counselors.counselor_create(username="cookie-counselor", password=None)
        client = Client()
        client.force_login(counselor.user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        return (b"cookie", cookie.encode()), counselor.counselor_id

    return database_sync_to_async(make)


async def test_a_client_without_origin_connects_with_a_bearer_token(sjoin):
    joined = await sjoin()
    client = Socket()
    connected = await client.connect(Authorization=f"Bearer {joined.token}")
    assert connected.command == "CONNECTED", connected
    assert connected.get("user-name") == joined.registration.customer.customer_id


async def test_a_client_without_origin_connects_with_a_counselor_api_token(counselor_async):
    counselor, key = counselor_async
    connected = await Socket().connect(Authorization=f"Token {key}")
    assert (connected.command, connected.get("user-name")) == ("CONNECTED", counselor.counselor_id)


@pytest.mark.parametrize("path", ["/ws/stomp", "/ws/sockjs/websocket"])
async def test_a_session_cookie_without_origin_is_not_read(counselor_cookie, path):
    cookie, _ = await counselor_cookie()
    client = Socket(path, [cookie])
    error = await client.connect()
    assert (error.command, error.get("message")) == ("ERROR", "authentication failed")
    assert await client.closed_code() == 4008


async def test_a_session_cookie_from_an_allowed_origin_still_authenticates(counselor_cookie):
    cookie, counselor_id = await counselor_cookie()
    connected = await Socket(headers=[ORIGIN, cookie]).connect()
    assert (connected.command, connected.get("user-name")) == ("CONNECTED", counselor_id)


async def test_a_session_cut_off_by_a_password_change_no_longer_authenticates_a_socket(counselor_cookie):
    cookie, counselor_id = await counselor_cookie()

    def password_change():
        user = Counselor.objects.get(counselor_id=counselor_id).user
        user.set_password("a-new-passphrase-9")
        user.save()

    await database_sync_to_async(password_change)()
    error = await Socket(headers=[ORIGIN, cookie]).connect()
    assert (error.command, error.get("message")) == ("ERROR", "authentication failed")


async def test_the_cookie_is_read_only_when_no_header_authenticates(sjoin, counselor_cookie, monkeypatch):
    """A customer's page sends the cookie too; its bearer CONNECT does not load the session."""
    joined = await sjoin()
    cookie, counselor_id = await counselor_cookie()
    reads = []
    read = auth.django_auth.get_user
    monkeypatch.setattr(auth.django_auth, "get_user", lambda request: reads.append(request) or read(request))

    connected = await Socket(headers=[ORIGIN, cookie]).connect(Authorization=f"Bearer {joined.token}")
    assert connected.get("user-name") == joined.registration.customer.customer_id
    assert reads == []
    connected = await Socket(headers=[ORIGIN, cookie]).connect()
    assert (connected.get("user-name"), len(reads)) == (counselor_id, 1)


# Guards, not news: the rule keeps these as they were.
@pytest.mark.parametrize("path", ["/ws/stomp", "/ws/raw", "/ws/sockjs/websocket"])
async def test_a_foreign_origin_is_still_refused_at_the_handshake(counselor_cookie, path):
    cookie, _ = await counselor_cookie()
    for headers in ([FOREIGN, cookie], [FOREIGN]):
        socket = WebsocketCommunicator(application, path, headers=headers)
        assert (await socket.connect())[0] is False, (path, headers)


async def test_the_raw_tier_without_origin_authenticates_by_token_but_not_by_cookie(sjoin, counselor_cookie):
    joined = await sjoin()
    socket = WebsocketCommunicator(application, "/ws/raw")
    assert (await socket.connect())[0] is True
    await socket.send_json_to({"type": "auth", "token": joined.token})
    assert (await socket.receive_json_from(3))["status"] == "WAITING"
    await socket.disconnect()
    cookie, _ = await counselor_cookie()
    socket = WebsocketCommunicator(application, "/ws/raw", headers=[cookie])
    assert (await socket.connect())[0] is True
    await socket.send_json_to({"type": "auth"})
    assert (await socket.receive_json_from(3))["type"] == "error"
