"""A raw HTTP/1.1 client that reads a streaming (chunked) response chunk by chunk."""

import socket


class StreamingResponse:
    def __init__(
        self, port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, *, head: bool = True
    ):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.file = self.sock.makefile("rb")
        if head:
            self.read_head()

    def read_head(self) -> None:
        status_line = self.file.readline().decode()
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().rstrip("\r\n")) != "":
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    def read(self) -> str:
        """Return the next chunk's text ('' at the end of the response)."""
        if not self.chunked:
            length = int(self.headers.get("content-length", "0"))
            return self.file.read(length).decode()
        size = int(self.file.readline().strip() or b"0", 16)
        data = self.file.read(size)
        self.file.readline()
        return data.decode()

    def read_until(self, text: str, limit: int = 100) -> str:
        """Read chunks until their concatenation contains ``text``."""
        seen = ""
        for _ in range(limit):
            chunk = self.read()
            if chunk == "":
                break
            seen += chunk
            if text in seen:
                return seen
        return seen

    def close(self) -> None:
        self.file.close()  # the socket stays open while its file object does
        self.sock.close()
