"""ASGI entry point: Django and SockJS for HTTP, the realtime consumers for WebSockets."""

import asyncio
import os

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections


class ConnectionReturningASGIHandler(ASGIHandler):
    """Django's ASGI handler, giving the request's pooled connection back even when the server kills the request.

    Django gives it back when the request ends (``request_finished`` closes it).
    A request cancelled before that never gets there: Daphne cancels one still
    running ``application_close_timeout`` (10 s) after its client left, and
    asgiref's test communicators cancel theirs when dropped. Its thread then
    kept the connection checked out for good, and a few of them ran the pool dry
    ("couldn't get a connection after 10.00 sec").
    """

    async def handle(self, scope, receive, send) -> None:
        try:
            await super().handle(scope, receive, send)
        except asyncio.CancelledError:
            # Still inside the request's ThreadSensitiveContext, so this runs on
            # the request's own thread, after the view if it is still running there.
            await sync_to_async(close_old_connections)()
            raise


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hearo.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does, before importing anything that touches models
django_asgi_app = ConnectionReturningASGIHandler()

from django.urls import get_resolver  # noqa: E402

# Import the URLconf (every view, DRF, the schema generator) now, not inside
# the first request: lazily it cost that request seconds and stalled the node's
# pushes meanwhile (measured with py-spy under the rank fan-out benchmark).
get_resolver().url_patterns  # noqa: B018

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from matching import inprocess  # noqa: E402
from queues import fastpath  # noqa: E402
from realtime import gc_policy  # noqa: E402
from realtime.routing import sockjs_http_app, websocket_application  # noqa: E402


def start_process_tasks() -> None:
    """Start this process's background tasks on its event loop (Daphne has no startup hook: the first request does).

    In the embedded default the web process is also the matcher (no Celery);
    every server process runs the garbage-collector freeze policy.
    """
    if settings.HEARO_INPROCESS_MATCHER:
        inprocess.ensure_started()
    gc_policy.ensure_started()


async def http_application(scope, receive, send):
    """SockJS paths go to the SockJS server, the heartbeat to its fast path, the rest to Django."""
    start_process_tasks()
    if scope["path"] == fastpath.PATH and scope["method"] == "POST" and settings.HEARO_HEARTBEAT_FASTPATH:
        return await fastpath.heartbeat_app(scope, receive, send)
    if sockjs_http_app.service_for(scope["path"]) is not None:
        return await sockjs_http_auth(scope, receive, send)
    return await django_asgi_app(scope, receive, send)


sockjs_http_auth = AuthMiddlewareStack(sockjs_http_app)


async def websocket_entry(scope, receive, send):
    start_process_tasks()
    return await websocket_application(scope, receive, send)


application = ProtocolTypeRouter({"http": http_application, "websocket": websocket_entry})
