"""Socket nodes on Uvicorn (issue #17): the same wire as Daphne, started as production starts them.

One real Uvicorn node (its ``websockets-sansio`` implementation, with deploy/serve's
flags: the command docker-compose.yml and the benchmark run) and real
clients: STOMP over WebSocket with heart-beats, the raw JSON tier,
sockjs-client with stompjs on the SockJS transports, application close
codes, HTTP/1.0, the heartbeat fast path and the health checks. Where Uvicorn
behaves differently from Daphne on the wire, the test says so.
"""

import http.client
import itertools
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.core.cache import cache
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bench.cluster import asgi_server
from hearo.health import MATCHER_STAMP_KEY
from tests.realtime.test_sockjs_clients import run_client
from tests.realtime.test_sockjs_conformance import http10
from tests.realtime.test_sockjs_protocol import text as fetch
from tests.support.http_stream import StreamingResponse
from tests.support.processes import SERVE, uvicorn
from tests.support.stomp_ws import StompWs
from tests.test_server import call

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = "/sockjs-test/echo"
CLOSE = "/sockjs-test/close"
BEAT_MS = 200  # the server's STOMP heart-beat offer, short enough to see several in a test


@pytest.fixture(scope="module")
def port(tmp_path_factory, django_db_setup, django_db_blocker):
    logs = tmp_path_factory.mktemp("uvicorn")
    extra = {"HEARO_SOCKJS_TEST_SERVICES": "1", "HEARO_STOMP_HEARTBEAT_MS": str(BEAT_MS)}
    with django_db_blocker.unblock(), uvicorn(logs, **extra) as (p, _):
        yield p


def two_in_line(port: int) -> tuple[dict, dict]:
    """Join two customers over REST; return (the one ahead, the one behind)."""
    _, ahead = call(port, "POST", "/api/queue/join", body={})
    _, me = call(port, "POST", "/api/queue/join", body={})
    return ahead, me


def closed_by_server(ws) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    return closed.value


# -- STOMP over WebSocket ------------------------------------------------------------


def test_a_stomp_client_hears_its_rank_then_the_new_rank_when_the_customer_ahead_cancels(port):
    ahead, me = two_in_line(port)
    client = StompWs(port)
    try:
        assert client.ws.subprotocol == "v12.stomp"
        connected = client.connect_customer(me["token"])
        assert (connected.command, connected.get("version")) == ("CONNECTED", "1.2")
        client.subscribe(f"/topic/queue-rank/{me['customerId']}")
        assert client.json()["rank"] == 2
        assert call(port, "POST", "/api/queue/cancel", ahead["token"])[0] == 200
        pushed = client.json()
        assert (pushed["status"], pushed["rank"], pushed["customerId"]) == ("WAITING", 1, me["customerId"])
    finally:
        client.close()


def test_a_browsers_compression_offer_is_declined_as_daphne_declines_it(port):
    """Every browser offers permessage-deflate; a compressed push costs a zlib context per socket."""
    url, origin = f"ws://127.0.0.1:{port}/ws/stomp", f"http://127.0.0.1:{port}"
    with connect(url, subprotocols=["v12.stomp"], origin=origin, compression="deflate") as ws:  # offers it
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert ws.response.status_code == 101
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_stomp_heart_beats_flow_both_ways_and_keep_the_session(port):
    _, me = two_in_line(port)
    client = StompWs(port)
    try:
        headers = {"accept-version": "1.2", "heart-beat": "100,100", "Authorization": f"Bearer {me['token']}"}
        client.send("CONNECT", headers)
        assert client.frame().get("heart-beat") == f"{BEAT_MS},{BEAT_MS}"
        beats = 0
        for _ in range(12):  # our beats every 100 ms; the server's every 200 ms (the larger offer)
            client.ws.send("\n")
            try:
                beats += client.ws.recv(timeout=0.1) == "\n"
            except TimeoutError:
                pass
        assert beats >= 2
        # Our beats counted as liveness: the session is still there to subscribe on.
        client.subscribe(f"/topic/queue-rank/{me['customerId']}")
        assert client.json()["rank"] == 2
    finally:
        client.close()


def test_a_bad_stomp_frame_gets_an_error_frame_then_the_mapped_application_close_code(port):
    client = StompWs(port)
    client.ws.send("NOT-A-COMMAND\n\n\x00")
    assert client.frame().command == "ERROR"
    # 1002 (protocol error) goes out as 4002, as under Daphne (consumers.application_close_code).
    assert closed_by_server(client.ws).rcvd.code == 4002


# -- The raw JSON tier -----------------------------------------------------------------


def test_the_raw_tier_sends_the_snapshot_answers_ping_and_pushes_the_new_rank(port):
    ahead, me = two_in_line(port)
    origin = f"http://127.0.0.1:{port}"
    with connect(f"ws://127.0.0.1:{port}/ws/raw", origin=origin, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": me["token"]}))
        assert json.loads(ws.recv(timeout=5))["rank"] == 2
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
        assert call(port, "POST", "/api/queue/cancel", ahead["token"])[0] == 200
        assert json.loads(ws.recv(timeout=5))["rank"] == 1
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=5))["error"] == "malformed JSON"
        assert closed_by_server(ws).rcvd.code == 4007


# -- SockJS ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming", "xhr-polling", "eventsource"])
def test_stompjs_over_sockjs_gets_its_rank_and_the_push(port, transport):
    assert shutil.which("node"), "Node 20 is required (make test installs the npm packages)"
    ahead, me = two_in_line(port)
    _, foreign = call(port, "POST", "/api/queue/join", body={})
    events = run_client(port, transport, me, ahead, foreign)
    assert events[0]["event"] == "connected"
    messages = [e["body"] for e in events if e["event"] == "message"]
    assert [(m["status"], m["rank"]) for m in messages] == [("WAITING", 2), ("WAITING", 1)]
    assert next(e for e in events if e["event"] == "disconnect-receipt")["receiptId"].startswith("close-")
    assert next(e for e in events if e["event"] == "foreign-error")["message"] == "subscription refused"


def test_xhr_streaming_carries_what_xhr_send_posts(port):
    url = f"{ECHO}/000/{uuid.uuid4()}"
    stream = StreamingResponse(port, "POST", url + "/xhr_streaming")
    try:
        assert stream.status == 200 and stream.chunked
        assert stream.read_until("o\n").endswith("o\n")
        assert fetch(port, "POST", url + "/xhr_send", b'["hello"]')[0].status == 204
        assert stream.read_until('a["hello"]\n').endswith('a["hello"]\n')
    finally:
        stream.close()


def test_a_stream_to_an_http10_client_ends_with_the_close_frame_and_the_connection(port):
    status, headers, body = http10(port, "POST", f"{CLOSE}/000/{uuid.uuid4()}/xhr_streaming")
    assert status.split()[1] == "200"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body.decode() == "h" * 2048 + "\n" + "o\n" + 'c[3000,"Go away!"]\n'
    status, headers, body = http10(port, "GET", ECHO + "/info")
    assert headers.get("content-length") == str(len(body)) and json.loads(body)["websocket"] is True


def test_uvicorn_sends_the_sockjs_close_code_and_unlike_daphne_its_reason(port):
    """Daphne drops ``websocket.close``'s reason (test_sockjs_conformance pins that); Uvicorn sends it."""
    origin = f"http://127.0.0.1:{port}"
    with connect(f"ws://127.0.0.1:{port}{CLOSE}/websocket", origin=origin, open_timeout=5) as ws:
        closed = closed_by_server(ws)
    assert (closed.rcvd.code, closed.rcvd.reason) == (3000, "Go away!")


# -- REST fast path and health -------------------------------------------------------


def test_the_heartbeat_fast_path_renews_the_lease_and_refuses_a_missing_token(port):
    _, me = two_in_line(port)
    status, lease = call(port, "POST", "/api/queue/heartbeat", me["token"])
    assert status == 200 and lease["leaseExpiresAt"] > me["timestamp"]
    status, error = call(port, "POST", "/api/queue/heartbeat")
    assert status == 401 and error["error"]


def test_an_idle_keep_alive_connection_outlives_uvicorns_default_5_s(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for pause in (0, 6):
            time.sleep(pause)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
    finally:
        connection.close()


def test_the_node_is_live_and_ready_once_a_matcher_has_run(port, redis_url):
    # The stamp goes through the cache this process shares with the node: Redis (local memory is per process).
    assert call(port, "GET", "/healthz")[0] == 200
    cache.set(MATCHER_STAMP_KEY, time.time())  # as a matcher pass does (this node runs none)
    status, ready = call(port, "GET", "/readyz")
    assert (status, ready["status"]) == (200, "ready")
    assert set(ready["checks"].values()) == {"ok"}


# -- deploy/serve and HEARO_ASGI_SERVER ----------------------------------------------------


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run deploy/serve with stand-ins for daphne and uvicorn that print the arguments they got."""
    for name in ("daphne", "uvicorn"):
        fake = tmp_path / name
        fake.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["sh", str(SERVE), *args], env=env, capture_output=True, text=True, timeout=10)


def test_deploy_serve_runs_daphne_by_default_and_uvicorn_with_daphnes_websocket_limits(tmp_path):
    assert serve(tmp_path).stdout.split() == "daphne -v0 -b 0.0.0.0 -p 8000 hearo.asgi:application".split()
    args = serve(tmp_path, "uvicorn", "127.0.0.1", "8001").stdout.split()
    assert args[:6] == "uvicorn hearo.asgi:application --host 127.0.0.1 --port 8001".split()
    options = dict(itertools.pairwise(args))  # each option and the word after it
    assert options["--ws"] == "websockets-sansio" and options["--ws-max-size"] == str(1024 * 1024)
    assert (options["--ws-ping-interval"], options["--ws-ping-timeout"]) == ("20", "30")  # Daphne's defaults
    assert options["--timeout-keep-alive"] == "75"
    assert options["--ws-per-message-deflate"] == "false"  # Daphne negotiates no compression either
    # HearO reads X-Forwarded-For itself (common/clientaddr.py): Uvicorn must not rewrite the peer first.
    assert "--no-proxy-headers" in args and "--proxy-headers" not in args


def test_an_unknown_server_name_fails_loudly_naming_the_variable(tmp_path):
    result = serve(tmp_path, "gunicorn")
    assert result.returncode != 0 and result.stdout == ""
    assert "HEARO_ASGI_SERVER" in result.stderr and "gunicorn" in result.stderr
    assert asgi_server({}) == "daphne" and asgi_server({"HEARO_ASGI_SERVER": "Uvicorn"}) == "uvicorn"
    with pytest.raises(ValueError, match="HEARO_ASGI_SERVER"):
        asgi_server({"HEARO_ASGI_SERVER": "gunicorn"})
