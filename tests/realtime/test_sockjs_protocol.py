"""The SockJS 0.3.3 protocol against a real Daphne, through the conformance services.

Our own tests of what sockjs-protocol's suite checks: framing, the session
rules, every transport, CORS and caching headers, and the errors.
"""

import json
import time
import uuid

import pytest
from websockets.sync.client import connect

from tests.support.http_stream import StreamingResponse
from tests.support.processes import daphne

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def port(tmp_path_factory, django_db_setup, django_db_blocker):
    with (
        django_db_blocker.unblock(),
        daphne(tmp_path_factory.mktemp("sockjs"), HEARO_SOCKJS_TEST_SERVICES="1") as (p, _),
    ):
        yield p


def request(port, method, path, body=b"", headers=None, head=True) -> StreamingResponse:
    return StreamingResponse(port, method, path, body, headers, head=head)


def text(port, method, path, body=b"", headers=None) -> tuple[StreamingResponse, str]:
    response = request(port, method, path, body, headers)
    data = ""
    while chunk := response.read():
        data += chunk
        if not response.chunked:
            break
    response.close()
    return response, data


def session(service="echo") -> str:
    return f"/sockjs-test/{service}/000/{uuid.uuid4()}"


def test_the_base_url_greets_and_unknown_paths_are_404(port):
    for path in ("/sockjs-test/echo", "/sockjs-test/echo/"):
        response, body = text(port, "GET", path)
        assert (response.status, body) == (200, "Welcome to SockJS!\n")
        assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    for suffix in ("/a", "/a.html", "//", "/a/a", "/a/a/", "/a./a/xhr", "/a/a./xhr"):
        assert text(port, "GET", "/sockjs-test/echo" + suffix)[0].status == 404


def test_info_describes_the_server_uncached_with_cors_and_fresh_entropy(port):
    response, body = text(port, "GET", "/sockjs-test/echo/info", headers={"Origin": "http://x.test"})
    info = json.loads(body)
    assert info["websocket"] is True and info["cookie_needed"] is False and info["origins"] == ["*:*"]
    assert response.headers["cache-control"] == "no-store, no-cache, no-transform, must-revalidate, max-age=0"
    assert response.headers["access-control-allow-origin"] == "http://x.test"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert json.loads(text(port, "GET", "/sockjs-test/echo/info")[1])["entropy"] != info["entropy"]
    assert json.loads(text(port, "GET", "/sockjs-test/disabled_websocket_echo/info")[1])["websocket"] is False


@pytest.mark.parametrize(("path", "methods"), [("/info", "OPTIONS, GET"), ("/a/a/xhr", "OPTIONS, POST")])
def test_options_answers_are_cacheable_preflights(port, path, methods):
    for origin in (None, "null", "http://x.test"):
        headers = {"Origin": origin} if origin else {}
        response, body = text(port, "OPTIONS", "/sockjs-test/echo" + path, headers=headers)
        assert (response.status, body) == (204, "")
        assert "max-age=31536000" in response.headers["cache-control"] and response.headers["expires"]
        assert response.headers["access-control-allow-methods"] == methods
        assert response.headers["access-control-allow-origin"] == (origin or "*")


def test_the_iframe_page_is_cacheable_with_an_etag(port):
    response, body = text(port, "GET", "/sockjs-test/echo/iframe-0.1.2.html?t=1")
    assert response.status == 200 and "SockJS.bootstrap_iframe()" in body
    assert "/static/vendor/sockjs/sockjs.min.js" in body
    again, empty = text(
        port, "GET", "/sockjs-test/echo/iframe.html", headers={"If-None-Match": response.headers["etag"]}
    )
    assert (again.status, empty) == (304, "")
    assert text(port, "GET", "/sockjs-test/echo/IFRAME.HTML")[0].status == 404


def test_an_xhr_polling_session_opens_echoes_and_refuses_a_second_receiver(port):
    url = session()
    assert text(port, "POST", url + "/xhr")[1] == "o\n"
    response, body = text(port, "POST", url + "/xhr_send", b'["a", "b"]', {"Content-Type": "T"})
    assert (response.status, body) == (204, "")
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert text(port, "POST", url + "/xhr")[1] == 'a["a","b"]\n'
    waiting = request(port, "POST", url + "/xhr", head=False)  # holds the receiving slot
    time.sleep(0.3)
    try:
        assert text(port, "POST", url + "/xhr")[1] == 'c[2010,"Another connection still open"]\n'
    finally:
        waiting.close()


def test_sending_to_an_unknown_session_is_404_and_bad_payloads_are_500(port):
    assert text(port, "POST", session() + "/xhr_send", b'["x"]')[0].status == 404
    url = session()
    text(port, "POST", url + "/xhr")
    response, body = text(port, "POST", url + "/xhr_send", b'["x')
    assert (response.status, body) == (500, "Broken JSON encoding.")
    assert text(port, "POST", url + "/xhr_send", b"")[1] == "Payload expected."
    assert text(port, "POST", url + "/xhr_send", b'{"not": "strings"}')[0].status == 500
    assert text(port, "POST", url + "/xhr_send", b'["' + b"x" * (3 * 1024 * 1024) + b'"]')[0].status == 413


def test_a_closed_session_keeps_answering_with_its_close_frame(port):
    url = session("close")
    assert text(port, "POST", url + "/xhr")[1] == "o\n"
    assert text(port, "POST", url + "/xhr")[1] == 'c[3000,"Go away!"]\n'
    assert text(port, "POST", url + "/xhr")[1] == 'c[3000,"Go away!"]\n'


def test_an_aborted_poll_interrupts_the_session(port):
    url = session()
    text(port, "POST", url + "/xhr")
    aborted = request(port, "POST", url + "/xhr", head=False)
    time.sleep(0.3)
    aborted.close()
    time.sleep(0.3)
    assert text(port, "POST", url + "/xhr")[1] in ("o\n", 'c[1002,"Connection interrupted"]\n')


def test_xhr_streaming_sends_a_prelude_then_frames_and_stops_at_the_response_limit_without_losing_any(port):
    url = session()
    stream = request(port, "POST", url + "/xhr_streaming")
    assert stream.headers["content-type"] == "application/javascript; charset=UTF-8"
    assert stream.read() == "h" * 2048 + "\n"
    assert stream.read() == "o\n"
    for i in range(40):  # 40 x ~135 bytes > the echo service's 4096-byte limit
        body = json.dumps([f"{i:03d}" + "x" * 128]).encode()
        assert text(port, "POST", url + "/xhr_send", body)[0].status == 204
    received = messages_until_end(stream)
    assert 0 < len(received) < 40  # the limit ended the response early
    rest = request(port, "POST", url + "/xhr_streaming")
    assert rest.read().startswith("hhh")  # a new prelude; the session goes on
    received += messages_until(rest, 40 - len(received))
    rest.close()
    assert [m[:3] for m in received] == [f"{i:03d}" for i in range(40)]  # all, once, in order


def frames_of(chunk: str) -> list[str]:
    return [line for line in chunk.splitlines() if line]


def messages_until_end(stream: StreamingResponse) -> list[str]:
    received = []
    while chunk := stream.read():
        for frame in frames_of(chunk):
            if frame.startswith("a"):
                received += json.loads(frame[1:])
    stream.close()
    return received


def messages_until(stream: StreamingResponse, count: int) -> list[str]:
    received: list[str] = []
    while len(received) < count:
        for frame in frames_of(stream.read()):
            if frame.startswith("a"):
                received += json.loads(frame[1:])
    return received


def test_eventsource_and_htmlfile_frame_their_messages(port):
    url = session()
    events = request(port, "GET", url + "/eventsource")
    assert events.headers["content-type"] == "text/event-stream"
    assert events.read() == "\r\n"
    assert events.read() == "data: o\r\n\r\n"
    text(port, "POST", url + "/xhr_send", b'["  \\u0000\\n\\r "]')
    assert events.read() == 'data: a["  \\u0000\\n\\r "]\r\n\r\n'
    events.close()
    html = request(port, "GET", session() + "/htmlfile?c=%63allback")
    prelude = html.read()
    assert "var c = parent.callback;" in prelude and len(prelude) > 1024
    assert html.read() == '<script>\np("o");\n</script>\r\n'
    html.close()
    assert text(port, "GET", session() + "/htmlfile")[1] == '"callback" parameter required'
    assert text(port, "GET", session() + "/jsonp?c=alert(1)")[1] == 'invalid "callback" parameter'


def test_jsonp_polling_and_form_encoded_sends(port):
    url = session()
    assert text(port, "GET", url + "/jsonp?c=%63allback")[1] == '/**/callback("o");\r\n'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response, body = text(port, "POST", url + "/jsonp_send", b"d=%5B%22x%22%5D", form)
    assert (response.status, body) == (200, "ok")
    assert text(port, "POST", url + "/jsonp_send", b"d=", form)[1] == "Payload expected."
    assert text(port, "GET", url + "/jsonp?c=x")[1] == '/**/x("a[\\"x\\"]");\r\n'


def test_the_cookie_needed_service_sets_jsessionid(port):
    response, _ = text(port, "POST", session("cookie_needed_echo") + "/xhr")
    assert response.headers["set-cookie"].startswith("JSESSIONID=dummy; Path=/")
    response, _ = text(port, "POST", session("cookie_needed_echo") + "/xhr", headers={"Cookie": "JSESSIONID=abc"})
    assert response.headers["set-cookie"].startswith("JSESSIONID=abc")
    response, _ = text(port, "POST", session() + "/xhr")
    assert "set-cookie" not in response.headers


def test_websocket_over_plain_http_is_refused_as_the_protocol_says(port):
    response, body = text(port, "GET", session() + "/websocket")
    assert response.status == 400 and 'Can "Upgrade" only to "WebSocket".' in body
    response, body = text(port, "POST", session() + "/websocket")
    assert (response.status, response.headers.get("allow"), body) == (405, "GET", "")
    assert "content-type" not in response.headers


def ws_url(port, path):
    return connect(f"ws://127.0.0.1:{port}{path}", origin=f"http://127.0.0.1:{port}", open_timeout=5)


def test_the_websocket_transport_frames_messages_and_ignores_empty_ones(port):
    with ws_url(port, session() + "/websocket") as ws:
        assert ws.recv(timeout=5) == "o"
        ws.send("")
        ws.send('["a"]')
        assert ws.recv(timeout=5) == 'a["a"]'
    with ws_url(port, session("close") + "/websocket") as ws:
        assert ws.recv(timeout=5) == "o"
        assert ws.recv(timeout=5) == 'c[3000,"Go away!"]'
    with ws_url(port, session() + "/websocket") as ws:
        ws.recv(timeout=5)
        ws.send('["a')
        with pytest.raises(Exception, match="3000"):  # closed at once
            ws.recv(timeout=5)


def test_the_raw_websocket_entry_point_has_no_framing(port):
    with ws_url(port, "/sockjs-test/echo/websocket") as ws:
        ws.send("Hello world!\uffff")
        assert ws.recv(timeout=5) == "Hello world!\uffff"


def test_the_stomp_service_refuses_foreign_browser_origins(port):
    response, _body = text(port, "GET", "/ws/sockjs/info", headers={"Origin": "http://evil.example"})
    assert response.status == 403
    assert text(port, "GET", "/ws/sockjs/info", headers={"Origin": f"http://127.0.0.1:{port}"})[0].status == 200
    assert text(port, "GET", "/ws/sockjs/info")[0].status == 200  # no Origin: not a browser
