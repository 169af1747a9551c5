"""A small blocking STOMP-over-WebSocket client for tests against real Daphne nodes."""

import json

from websockets.sync.client import connect

from realtime.stomp import Frame, Heartbeat, Parser


class StompWs:
    def __init__(self, port: int, path: str = "/ws/stomp") -> None:
        self.ws = connect(
            f"ws://127.0.0.1:{port}{path}",
            subprotocols=["v12.stomp"],
            origin=f"http://127.0.0.1:{port}",
            open_timeout=10,
        )
        self.parser = Parser()
        self.pending: list[Frame] = []

    def send(self, command: str, headers: dict, body: str = "") -> None:
        lines = [command, *(f"{k}:{v}" for k, v in headers.items()), "", body]
        self.ws.send("\n".join(lines) + "\x00")

    def frame(self, timeout: float = 5) -> Frame:
        while not self.pending:
            data = self.ws.recv(timeout=timeout)
            self.pending.extend(f for f in self.parser.feed(data) if not isinstance(f, Heartbeat))
        return self.pending.pop(0)

    def json(self, timeout: float = 5) -> dict:
        frame = self.frame(timeout)
        assert frame.command == "MESSAGE", frame
        return json.loads(frame.body)

    def connect_customer(self, token: str) -> Frame:
        self.send("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0", "Authorization": f"Bearer {token}"})
        return self.frame()

    def subscribe(self, destination: str, sub_id: str = "sub-0") -> None:
        self.send("SUBSCRIBE", {"id": sub_id, "destination": destination})

    def close(self) -> None:
        self.ws.close()
