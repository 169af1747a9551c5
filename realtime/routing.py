"""WebSocket routes (behind session auth and the Origin rule) and the SockJS services."""

from urllib.parse import urlparse

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.urls import path, re_path

from realtime.auth import COOKIE_AUTH
from realtime.consumers import RawJsonConsumer, StompConsumer
from realtime.sockjs.http import SockJSApp, allowed_origin
from realtime.sockjs.services import build_services
from realtime.sockjs.ws import websocket_consumer


def stomp_consumer() -> type[StompConsumer]:
    """Return the consumer every STOMP socket gets, chosen once at start-up.

    ``HEARO_STOMP_TEST_BROKER`` swaps in the conformance broker: a test mode,
    loaded only when asked for.
    """
    if settings.HEARO_STOMP_TEST_BROKER:
        from realtime.conformance import ConformanceStompConsumer

        return ConformanceStompConsumer
    return StompConsumer


STOMP_CONSUMER = stomp_consumer()
sockjs_services = build_services(stomp_connection=STOMP_CONSUMER.connection_class)
sockjs_http_app = SockJSApp(sockjs_services)


def sockjs_routes() -> list:
    routes = []
    for service in sockjs_services:
        prefix = service.prefix.lstrip("/")
        routes.append(re_path(rf"^{prefix}/[^/.]+/[^/.]+/websocket$", websocket_consumer(service)))
        # The raw entry point: plain WebSocket, no SockJS framing.
        raw = STOMP_CONSUMER.as_asgi() if service.prefix == "/ws/sockjs" else websocket_consumer(service, raw=True)
        routes.append(path(f"{prefix}/websocket", raw))
    return routes


websocket_urlpatterns = [
    path("ws/stomp", STOMP_CONSUMER.as_asgi()),
    path("ws/raw", RawJsonConsumer.as_asgi()),
]


def allowed_origins() -> list[str]:
    """The Origins a browser page may open a socket from (its cookie then counts)."""
    return [*settings.HEARO_WS_ALLOWED_ORIGINS, *settings.ALLOWED_HOSTS]


class CookiesNeedOrigin:
    """The Origin rule: a session cookie counts only on a socket from an allowed Origin.

    The check exists to stop a foreign page riding a counselor's login
    (cross-site WebSocket hijacking). Browsers always send Origin, so:

    - an allowed Origin: the cookie counts (read at CONNECT, Django's session auth);
    - a foreign one: refused at the handshake, as before;
    - none: not a browser. The socket is accepted but the cookie is never
      read; the client must authenticate with a header in CONNECT
      (``Authorization: Bearer|Token``, or the conformance broker's login).
    """

    def __init__(self, routes: list, origin_allowed) -> None:
        self.router = URLRouter(routes)
        self.origin_allowed = origin_allowed

    async def __call__(self, scope, receive, send):
        origin = dict(scope.get("headers", [])).get(b"origin")
        if origin is None:
            return await self.router(scope, receive, send)  # nothing will be read from a cookie
        if self.origin_allowed(origin.decode("latin1")):
            # The cookie counts, read at CONNECT only if no header authenticates (realtime.auth.socket_session).
            return await self.router({**scope, COOKIE_AUTH: True}, receive, send)
        return await WebsocketDenier()(scope, receive, send)


_ORIGINS = OriginValidator(None, allowed_origins())


def plain_origin_allowed(origin: str) -> bool:
    """Return whether ``/ws/stomp`` and ``/ws/raw`` take this Origin (Channels' matching)."""
    return _ORIGINS.valid_origin(urlparse(origin))


# SockJS sockets: the same rule, with the SockJS services' own Origin matching.
plain_websockets = CookiesNeedOrigin(websocket_urlpatterns, plain_origin_allowed)
sockjs_websockets = CookiesNeedOrigin(sockjs_routes(), allowed_origin)


async def websocket_application(scope, receive, send):
    if sockjs_http_app.service_for(scope["path"]) is not None:
        return await sockjs_websockets(scope, receive, send)
    return await plain_websockets(scope, receive, send)
