"""The raw JSON WebSocket tier: the same connection logic, JSON instead of STOMP frames.

Protocol: the client's first message is ``{"type": "auth", "token": "<customer token>"}``
(or ``{"type": "auth", "authorization": "Token <counselor key>"}``); the server
answers with the snapshot of the caller's own topic, then pushes the same
bodies STOMP carries. ``{"type": "ping"}`` is answered with ``{"type": "pong"}``
and counts as liveness. Errors are ``{"type": "error", "error", "detail"}``,
then the socket closes.
"""

import json

from common import events
from realtime.auth import Credentials, socket_session
from realtime.connection import ClientError, PushConnection
from realtime.destinations import Topic, parse

MAX_MESSAGE_BYTES = 4096


class JsonConnection(PushConnection):
    async def receive(self, data: bytes | str) -> None:
        try:
            self.check_rate()
            await self.handle(self.decode(data))
        except ClientError as exc:
            await self.fail(exc.message, exc.detail, code=exc.close_code)

    def decode(self, data: bytes | str) -> dict:
        if len(data) > MAX_MESSAGE_BYTES:
            raise ClientError("message too large", f"limit is {MAX_MESSAGE_BYTES} bytes", code=1009)
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ClientError("malformed JSON", "every message must be a JSON object", code=1007) from None
        except RecursionError:
            # '[' * 4000 fits the size limit but not the decoder's stack: the client's fault.
            raise ClientError("malformed JSON", "nested too deeply", code=1007) from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ClientError("malformed message", 'expected {"type": …}', code=1007)
        return message

    async def handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "auth":
            await self.on_auth(message)
        elif self.principal is None:
            raise ClientError("authenticate first", 'the first message must be {"type": "auth", "token": …}')
        elif kind == "ping":
            await self.touch()
            await self.send({"type": "pong"})
        else:
            raise ClientError("unknown message type", repr(kind), code=1003)

    async def on_auth(self, message: dict) -> None:
        if self.principal is not None:
            raise ClientError("already authenticated", "send auth once per connection")
        token, authorization = message.get("token"), message.get("authorization")
        if authorization is None and isinstance(token, str):
            authorization = f"Bearer {token}"
        if not isinstance(authorization, str):
            authorization = None
        credentials = Credentials(authorization=authorization, session=socket_session(self.scope))
        principal = await self.authenticate(credentials)
        if principal.own_destination is None:
            raise ClientError("no topic", "this principal has no topic on the raw tier")
        await self.attach(parse(principal.own_destination))

    async def deliver(self, topic: Topic, body: dict) -> None:
        await self.send(body)

    async def send(self, body: dict) -> None:
        if not self.closed:
            await self.transport.send_data(events.compact_json(body))

    async def fail(self, message: str, detail: str, *, code: int) -> None:
        if self.closed:
            return
        await self.send({"type": "error", "error": message, "detail": detail})
        await self.transport.close(code)
