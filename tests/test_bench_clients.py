"""The benchmark's keep-alive HTTP client survives a server that closes an idle connection."""

import asyncio

from bench.clients import HttpConn


def test_a_request_after_the_server_closed_the_idle_connection_goes_out_on_a_new_one():
    async def scenario() -> tuple[list, int]:
        connections = 0

        async def serve_one_then_close(reader, writer):
            nonlocal connections
            connections += 1
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()  # as Daphne does to a keep-alive connection idle for 60 s

        server = await asyncio.start_server(serve_one_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = await HttpConn(port).open()
        answers = [await conn.request("POST", "/api/queue/cancel")]
        await asyncio.sleep(0.2)  # the server's FIN arrives while the connection is idle
        answers.append(await conn.request("POST", "/api/queue/cancel"))
        conn.close()
        server.close()
        await server.wait_closed()
        return answers, connections

    answers, connections = asyncio.run(scenario())
    assert answers == [(200, {"ok": True}), (200, {"ok": True})]
    assert connections == 2
