"""WebSocket routes (behind session auth and the Origin check) and the SockJS services."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.urls import path, re_path

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
    """Browsers' Origin must name an allowed host; other clients must send one too."""
    return [*settings.HEARO_WS_ALLOWED_ORIGINS, *settings.ALLOWED_HOSTS]


class SockJSOriginCheck:
    """SockJS sockets: a browser's Origin must be allowed; no Origin means no browser.

    sockjs-client outside a browser cannot set an Origin, and a missing one
    cannot come from a cross-site page (browsers always send it), so it passes.
    """

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        origin = dict(scope.get("headers", [])).get(b"origin")
        if allowed_origin(origin.decode("latin1") if origin is not None else None):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


plain_websockets = OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed_origins())
sockjs_websockets = SockJSOriginCheck(AuthMiddlewareStack(URLRouter(sockjs_routes())))


async def websocket_application(scope, receive, send):
    if sockjs_http_app.service_for(scope["path"]) is not None:
        return await sockjs_websockets(scope, receive, send)
    return await plain_websockets(scope, receive, send)
