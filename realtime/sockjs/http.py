"""The SockJS HTTP side as a raw ASGI app: info, iframe, and the session transports.

Raw ASGI rather than Django views: streaming transports hold a response open,
write frames as they come and must notice the client going away.
"""

import asyncio
import hashlib
import json
import re
import secrets
import time
from email.utils import formatdate
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from django.conf import settings
from django.templatetags.static import static

from realtime.sockjs import framing
from realtime.sockjs.services import Service
from realtime.sockjs.session import Session

NO_CACHE = "no-store, no-cache, must-revalidate, max-age=0"
ONE_YEAR = 31536000
MAX_PAYLOAD = 2 * 1024 * 1024  # a 1 MiB STOMP frame, JSON-escaped, fits
_SESSION_PATH = re.compile(r"^/([^/.]+)/([^/.]+)/([a-z_]+)$")
_IFRAME = re.compile(r"^/iframe(-[^/]*)?\.html$")

JS = "application/javascript; charset=UTF-8"
TEXT = "text/plain; charset=UTF-8"
# (method, transport) -> handler name; OPTIONS answers the preflight for POST ones.
TRANSPORTS = {
    "xhr": ("POST", "xhr_poll"),
    "xhr_send": ("POST", "xhr_send"),
    "xhr_streaming": ("POST", "xhr_streaming"),
    "eventsource": ("GET", "eventsource"),
    "htmlfile": ("GET", "htmlfile"),
    "jsonp": ("GET", "jsonp_poll"),
    "jsonp_send": ("POST", "jsonp_send"),
}


class Request:
    def __init__(self, scope, receive, send, service: Service) -> None:
        self.scope, self.receive, self._send, self.service = scope, receive, send, service
        self.headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
        self.method = scope["method"]
        self.query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        self.started = False

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")

    def cors(self) -> list[tuple[str, str]]:
        origin = self.origin
        headers = [
            ("Access-Control-Allow-Origin", origin if origin and origin != "null" else "*"),
            ("Access-Control-Allow-Credentials", "true"),
        ]
        if self.headers.get("access-control-request-headers"):
            headers.append(("Access-Control-Allow-Headers", self.headers["access-control-request-headers"]))
        return headers

    def cookie(self) -> list[tuple[str, str]]:
        if not self.service.cookie_needed:
            return []
        jar = SimpleCookie(self.headers.get("cookie", ""))
        value = jar["JSESSIONID"].value if "JSESSIONID" in jar else "dummy"
        return [("Set-Cookie", f"JSESSIONID={value}; Path=/")]

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        raw = [(k.encode("latin1"), v.encode("latin1")) for k, v in headers]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, text: str, *, more: bool = True) -> int:
        data = text.encode()
        await self._send({"type": "http.response.body", "body": data, "more_body": more})
        return len(data)

    async def respond(self, status: int, body: str = "", content_type: str | None = TEXT, headers=()) -> None:
        base = [("Content-Type", content_type)] if content_type else []
        await self.start(status, [*base, *headers])
        await self.write(body, more=False)

    async def body(self) -> bytes:
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ConnectionAbortedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_PAYLOAD:
                raise OverflowError
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def wait_for_disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass


def allowed_origin(origin: str | None) -> bool:
    """Browsers must come from an allowed host; clients sending no Origin are not browsers."""
    if origin is None:
        return True
    allowed = [*settings.HEARO_WS_ALLOWED_ORIGINS, *settings.ALLOWED_HOSTS]
    if "*" in allowed:
        return True
    host = re.sub(r"^[a-z]+://", "", origin).split("/")[0]
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return origin in allowed or hostname in allowed


class SockJSApp:
    """Route a request under one of the services' prefixes."""

    def __init__(self, services: list[Service]) -> None:
        # Longest prefix first, so /sockjs-test/echo never shadows a longer one.
        self.services = sorted(services, key=lambda s: -len(s.prefix))

    def service_for(self, path: str) -> tuple[Service, str] | None:
        for service in self.services:
            if path == service.prefix or path.startswith(service.prefix + "/"):
                return service, path[len(service.prefix) :]
        return None

    async def __call__(self, scope, receive, send) -> None:
        found = self.service_for(scope["path"])
        if found is None:
            raise LookupError(scope["path"])
        service, rest = found
        request = Request(scope, receive, send, service)
        try:
            await self.dispatch(request, rest)
        except ConnectionAbortedError:
            pass
        except OverflowError:
            if not request.started:
                await request.respond(413, "Payload too large.")

    async def dispatch(self, request: Request, rest: str) -> None:
        if request.service.check_origin and not allowed_origin(request.origin):
            return await request.respond(403, "Origin not allowed.")
        if rest in ("", "/"):
            return await request.respond(200, "Welcome to SockJS!\n")
        if rest == "/info":
            return await self.info(request)
        if _IFRAME.match(rest):
            return await self.iframe(request)
        match = _SESSION_PATH.match(rest)
        if match is None:
            return await request.respond(404, "Not found.")
        _, sid, transport = match.groups()
        if transport == "websocket":
            return await self.websocket_over_http(request)
        if transport not in TRANSPORTS:
            return await request.respond(404, "Not found.")
        method, handler = TRANSPORTS[transport]
        if request.method == "OPTIONS" and method == "POST":
            return await self.options(request, "OPTIONS, POST")
        if request.method != method:
            return await request.respond(404, "Not found.")
        await getattr(self, handler)(request, sid)

    # -- static-ish endpoints -------------------------------------------------

    async def info(self, request: Request) -> None:
        if request.method == "OPTIONS":
            return await self.options(request, "OPTIONS, GET")
        body = {
            "websocket": request.service.websocket,
            "cookie_needed": request.service.cookie_needed,
            "origins": ["*:*"],
            "entropy": secrets.randbits(32),
        }
        headers = [("Cache-Control", NO_CACHE), *request.cors()]
        await request.respond(200, json.dumps(body), "application/json; charset=UTF-8", headers)

    async def options(self, request: Request, methods: str) -> None:
        headers = [
            ("Cache-Control", f"public, max-age={ONE_YEAR}"),
            ("Expires", formatdate(usegmt=True, timeval=time.time() + ONE_YEAR)),
            ("Access-Control-Max-Age", str(ONE_YEAR)),
            ("Access-Control-Allow-Methods", methods),
            *request.cors(),
            *request.cookie(),
        ]
        await request.respond(204, "", None, headers)

    async def iframe(self, request: Request) -> None:
        body = framing.IFRAME % static("vendor/sockjs/sockjs.min.js")
        etag = '"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return await request.respond(304, "", None, [("ETag", etag)])
        headers = [
            ("Cache-Control", f"public, max-age={ONE_YEAR}"),
            ("Expires", formatdate(usegmt=True, timeval=time.time() + ONE_YEAR)),
            ("ETag", etag),
        ]
        await request.respond(200, body, "text/html; charset=UTF-8", headers)

    async def websocket_over_http(self, request: Request) -> None:
        if request.method == "GET":
            return await request.respond(400, 'Can "Upgrade" only to "WebSocket".')
        # 405 with Allow and no Content-Type, as the protocol's test expects.
        await request.respond(405, "", None, [("Allow", "GET")])

    # -- sessions -------------------------------------------------------------

    async def session_for(self, request: Request, sid: str) -> tuple[Session, bool]:
        registry = request.service.registry
        session = registry.get(sid)
        if session is not None:
            return session, False
        delay = request.service.disconnect_delay
        return await registry.create(sid, request.service.handler(), request.scope, disconnect_delay=delay), True

    async def receive_into(self, request: Request, sid: str, *, form: bool = False) -> None:
        """Read an xhr_send / jsonp_send payload into the session."""
        session = request.service.registry.get(sid)
        if session is None:
            return await request.respond(404, "Not found.", headers=request.cookie())
        raw = (await request.body()).decode("utf-8", "replace")
        if form and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raw = (parse_qs(raw).get("d") or [""])[0]
        if not raw:
            return await request.respond(500, "Payload expected.", headers=request.cookie())
        try:
            texts = framing.decode(raw)
        except framing.BrokenJson:
            return await request.respond(500, "Broken JSON encoding.", headers=request.cookie())
        await session.deliver(texts)
        return None

    async def xhr_send(self, request: Request, sid: str) -> None:
        if await self.receive_into(request, sid) is None and not request.started:
            await request.respond(204, "", TEXT, [("Cache-Control", NO_CACHE), *request.cors(), *request.cookie()])

    async def jsonp_send(self, request: Request, sid: str) -> None:
        if await self.receive_into(request, sid, form=True) is None and not request.started:
            await request.respond(200, "ok", TEXT, [("Cache-Control", NO_CACHE), *request.cookie()])

    async def xhr_poll(self, request: Request, sid: str) -> None:
        await request.body()
        await self.poll(request, sid, JS, framing.xhr_frame, cors=True)

    async def jsonp_poll(self, request: Request, sid: str) -> None:
        callback = (request.query.get("c") or [None])[0]
        if not callback:
            return await request.respond(500, '"callback" parameter required')
        if not framing.valid_callback(callback):
            return await request.respond(500, 'invalid "callback" parameter')
        await self.poll(request, sid, JS, lambda f: framing.jsonp_frame(callback, f), cors=False)

    async def xhr_streaming(self, request: Request, sid: str) -> None:
        await request.body()
        await self.stream(request, sid, JS, framing.STREAMING_PRELUDE, framing.xhr_frame, cors=True)

    async def eventsource(self, request: Request, sid: str) -> None:
        content_type = "text/event-stream; charset=UTF-8"
        await self.stream(request, sid, content_type, framing.EVENTSOURCE_PRELUDE, framing.eventsource_frame)

    async def htmlfile(self, request: Request, sid: str) -> None:
        callback = (request.query.get("c") or [None])[0]
        if not callback:
            return await request.respond(500, '"callback" parameter required')
        if not framing.valid_callback(callback):
            return await request.respond(500, 'invalid "callback" parameter')
        prelude = framing.htmlfile_prelude(callback)
        await self.stream(request, sid, "text/html; charset=UTF-8", prelude, framing.htmlfile_frame)

    def _headers(self, request: Request, cors: bool) -> list[tuple[str, str]]:
        return [("Cache-Control", NO_CACHE), *(request.cors() if cors else []), *request.cookie()]

    async def poll(self, request: Request, sid: str, content_type: str, wrap, *, cors: bool) -> None:
        """One frame per response: open, queued messages, close, or a heartbeat after a wait."""
        session, _ = await self.session_for(request, sid)
        headers = self._headers(request, cors)
        if not session.attach(request):
            await request.respond(200, wrap(framing.close(*framing.ANOTHER_CONNECTION)), content_type, headers)
            return
        frame, interrupted = None, False
        try:
            frame = session.next_frame()
            if frame is None:
                frame, interrupted = await self._wait_one(request, session)
            if frame is not None:
                await request.respond(200, wrap(frame), content_type, headers)
        finally:
            session.detach(request, interrupted=interrupted)

    async def _wait_one(self, request: Request, session: Session) -> tuple[str | None, bool]:
        gone = asyncio.ensure_future(request.wait_for_disconnect())
        try:
            ready = asyncio.ensure_future(session.wait(request.service.heartbeat_delay))
            await asyncio.wait({gone, ready}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                ready.cancel()
                return None, True
            return (session.next_frame() if ready.result() else None) or framing.HEARTBEAT, False
        finally:
            gone.cancel()

    async def stream(self, request: Request, sid: str, content_type: str, prelude: str, wrap, *, cors=False):
        """Hold the response open and write frames until the limit, a close, or the client leaves."""
        session, _ = await self.session_for(request, sid)
        await request.start(200, [("Content-Type", content_type), *self._headers(request, cors)])
        await request.write(prelude)
        if not session.attach(request):
            await request.write(wrap(framing.close(*framing.ANOTHER_CONNECTION)), more=False)
            return
        gone = asyncio.ensure_future(request.wait_for_disconnect())
        interrupted = False
        try:
            interrupted = await self._pump(request, session, wrap, gone)
        finally:
            gone.cancel()
            session.detach(request, interrupted=interrupted)
        if not interrupted:
            await request.write("", more=False)

    async def _pump(self, request: Request, session: Session, wrap, gone: asyncio.Future) -> bool:
        """Write frames; return True if the client went away."""
        written = 0
        while True:
            frame = session.next_frame()
            while frame is not None:
                written += await request.write(wrap(frame))
                if frame == session.close_frame:
                    return False
                frame = session.next_frame()
            if written >= request.service.response_limit:
                return False  # the client reconnects; the session keeps its queue
            ready = asyncio.ensure_future(session.wait(request.service.heartbeat_delay))
            await asyncio.wait({gone, ready}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                ready.cancel()
                return True
            if not ready.result():
                written += await request.write(wrap(framing.HEARTBEAT))
