"""WebSocket routes, behind session auth and the Origin check."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path

from realtime.consumers import RawJsonConsumer, StompConsumer

websocket_urlpatterns = [
    path("ws/stomp", StompConsumer.as_asgi()),
    path("ws/raw", RawJsonConsumer.as_asgi()),
]


def allowed_origins() -> list[str]:
    """Browsers' Origin must name an allowed host; other clients must send one too."""
    return [*settings.HEARO_WS_ALLOWED_ORIGINS, *settings.ALLOWED_HOSTS]


websocket_application = OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed_origins())
