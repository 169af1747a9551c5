"""``POST /api/queue/heartbeat`` as a bare ASGI route, in front of Django.

Every waiting client beats every 10 s, so 5,000 customers are 500 requests a
second. A Django view under Daphne serves about 120 a second here; this path
skips the middleware stack and the thread hop: a cached token -> registration
mapping and the lease are read and written on the event loop in one Redis
round trip (a Lua script, redis.asyncio).
Only a cache miss (the first beat after a restart) goes to the database, via
the same selector the Django view uses. Answers are identical to that view's.
"""

import json

from channels.db import database_sync_to_async

from common.api import UNAVAILABLE
from common.errors import DomainError, Unauthorized
from queues import leases
from queues.selectors import registration_by_token, token_hash
from queues.services import registration_heartbeat

PATH = "/api/queue/heartbeat"


def _bearer(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


async def _respond(send, status: int, body: dict, extra: tuple = ()) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _slow_beat(token: str) -> int:
    """Cache miss: read the visit from the database and beat through the service."""
    expires_at = registration_heartbeat(registration=registration_by_token(token=token))
    return int(expires_at.timestamp() * 1000)


async def heartbeat_app(scope, receive, send) -> None:
    while (await receive()).get("more_body"):
        pass  # the body carries nothing
    token = _bearer(scope)
    try:
        if not token:
            raise Unauthorized("missing bearer token")
        expires = await leases.abeat(token_hash(token))
        if expires is None:
            expires = await database_sync_to_async(_slow_beat)(token)
    except DomainError as exc:
        return await _respond(send, exc.status, {"error": exc.code, "detail": exc.detail})
    except UNAVAILABLE:
        # As the Django views answer it (common/api.py): the page retries after Retry-After.
        body = {"error": "unavailable", "detail": "a backing service is down; retry shortly"}
        return await _respond(send, 503, body, ((b"retry-after", b"2"),))
    await _respond(send, 200, {"leaseExpiresAt": expires})
