"""WebSocket routes (behind session auth and the Origin check) and the SockJS services."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path, re_path

from realtime.consumers import RawJsonConsumer, StompConsumer
from realtime.sockjs.http import SockJSApp
from realtime.sockjs.services import build_services
from realtime.sockjs.ws import websocket_consumer

sockjs_services = build_services()
sockjs_http_app = SockJSApp(sockjs_services)


def sockjs_routes() -> list:
    routes = []
    for service in sockjs_services:
        prefix = service.prefix.lstrip("/")
        routes.append(re_path(rf"^{prefix}/[^/.]+/[^/.]+/websocket$", websocket_consumer(service)))
        # The raw entry point: plain WebSocket, no SockJS framing.
        raw = StompConsumer.as_asgi() if service.prefix == "/ws/sockjs" else websocket_consumer(service, raw=True)
        routes.append(path(f"{prefix}/websocket", raw))
    return routes


websocket_urlpatterns = [
    path("ws/stomp", StompConsumer.as_asgi()),
    path("ws/raw", RawJsonConsumer.as_asgi()),
    *sockjs_routes(),
]


def allowed_origins() -> list[str]:
    """Browsers' Origin must name an allowed host; other clients must send one too."""
    return [*settings.HEARO_WS_ALLOWED_ORIGINS, *settings.ALLOWED_HOSTS]


websocket_application = OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed_origins())
