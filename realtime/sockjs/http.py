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

# no-transform everywhere: a proxy that recompresses or rewrites a stream
# buffers it, and the client then sees nothing until the response ends.
NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
ONE_YEAR = 31536000
CACHE_A_YEAR = f"public, max-age={ONE_YEAR}, no-transform"
MAX_PAYLOAD = 2 * 1024 * 1024  # a 1 MiB STOMP frame, JSON-escaped, fits
_SESSION_PATH = re.compile(r"^/([^/.]+)/([^/.]+)/([a-z_]+)$")
_IFRAME = re.compile(r"^/iframe(-[^/]*)?\.html$")

JS = "application/javascript; charset=UTF-8"
TEXT = "text/plain; charset=UTF-8"
EVENT_STREAM = "text/event-stream"  # exactly, no charset: as the protocol's tests and reference servers have it
# The transports a page reaches with CORS requests: they answer preflights.
CORS_TRANSPORTS = {"xhr", "xhr_send", "xhr_streaming"}
# transport -> (method, handler name).
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
        """Allow the requesting page, with credentials; a request with no Origin gets ``*`` alone.

        ``null`` (a sandboxed iframe, a file:// page) is echoed like any origin:
        browsers refuse ``*`` together with credentials, so ``*`` goes out only
        without them.
        """
        origin = self.origin
        if origin:
            headers = [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true")]
        else:
            headers = [("Access-Control-Allow-Origin", "*")]
        headers.append(("Vary", "Origin"))
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

    @property
    def http10(self) -> bool:
        return self.scope.get("http_version") == "1.0"

    async def respond(self, status: int, body: str = "", content_type: str | None = TEXT, headers=()) -> None:
        """Send a whole response: uncached unless ``headers`` say otherwise, its length always given.

        Content-Length lets an HTTP/1.0 client (no chunking) tell the end of
        the body without waiting for the connection to close.
        """
        data = body.encode()
        base = [("Content-Type", content_type)] if content_type else []
        if not any(name.lower() == "cache-control" for name, _ in headers):
            base.append(("Cache-Control", NO_CACHE))
        if status not in (204, 304):  # these have no body, so no length either
            base.append(("Content-Length", str(len(data))))
        await self.start(status, [*base, *headers])
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def start_stream(self, content_type: str, headers: list[tuple[str, str]]) -> None:
        """Start a response whose length nobody knows yet: chunked in HTTP/1.1, ended by a close in 1.0."""
        closing = [("Connection", "close")] if self.http10 else []
        await self.start(200, [("Content-Type", content_type), *closing, *headers])

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


def cached_for_a_year() -> list[tuple[str, str]]:
    return [("Cache-Control", CACHE_A_YEAR), ("Expires", formatdate(usegmt=True, timeval=time.time() + ONE_YEAR))]


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header (a list, ``*``, weak tags) names ``etag``."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


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
        if request.method == "OPTIONS" and transport in CORS_TRANSPORTS:
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
        await request.respond(200, json.dumps(body), "application/json; charset=UTF-8", request.cors())

    async def options(self, request: Request, methods: str) -> None:
        headers = [
            *cached_for_a_year(),
            ("Access-Control-Max-Age", str(ONE_YEAR)),
            ("Access-Control-Allow-Methods", methods),
            *request.cors(),
            *request.cookie(),
        ]
        await request.respond(204, "", None, headers)

    async def iframe(self, request: Request) -> None:
        body = framing.IFRAME % static("vendor/sockjs/sockjs.min.js")
        etag = '"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() + '"'
        headers = [*cached_for_a_year(), ("ETag", etag)]
        if etag_matches(request.headers.get("if-none-match"), etag):
            # A 304 repeats the validators and caching headers, without a body or its type.
            return await request.respond(304, "", None, headers)
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

    async def receive_into(self, request: Request, sid: str, headers: list, *, form: bool = False) -> bool:
        """Read an xhr_send / jsonp_send payload into the session; False if it was answered with an error."""
        session = request.service.registry.get(sid)
        if session is None:
            await request.respond(404, "Not found.", headers=headers)
            return False
        raw = (await request.body()).decode("utf-8", "replace")
        if form and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raw = (parse_qs(raw).get("d") or [""])[0]
        if not raw:
            await request.respond(500, "Payload expected.", headers=headers)
            return False
        try:
            texts = framing.decode(raw)
        except framing.BrokenJson:
            await request.respond(500, "Broken JSON encoding.", headers=headers)
            return False
        await session.deliver(texts)
        return True

    async def xhr_send(self, request: Request, sid: str) -> None:
        # CORS on the errors too, so a cross-origin page can read why.
        headers = [*request.cors(), *request.cookie()]
        if await self.receive_into(request, sid, headers):
            await request.respond(204, "", TEXT, headers)

    async def jsonp_send(self, request: Request, sid: str) -> None:
        headers = request.cookie()
        if await self.receive_into(request, sid, headers, form=True):
            await request.respond(200, "ok", TEXT, headers)

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
        await self.stream(request, sid, EVENT_STREAM, framing.EVENTSOURCE_PRELUDE, framing.eventsource_frame)

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
        await request.start_stream(content_type, self._headers(request, cors))
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
