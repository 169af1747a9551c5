"""The harness's lean WebSocket client against a server written by others (the ``websockets`` library)."""

import asyncio
import random

import pytest
from websockets.asyncio.server import serve
from websockets.http11 import Response

from bench import wsclient


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []
        self.arrived = asyncio.Event()

    def __call__(self, data, now: float) -> None:
        self.messages.append(data)
        self.arrived.set()

    async def next(self):
        while not self.messages:
            self.arrived.clear()
            await self.arrived.wait()
        return self.messages.pop(0)


async def server(handler, **options):
    return await serve(handler, "127.0.0.1", 0, compression=None, **options)


def url(srv) -> str:
    return f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/ws/stomp"


def test_a_message_goes_out_masked_and_comes_back_with_the_chosen_subprotocol():
    async def echo(ws):
        async for message in ws:  # the library closes with 1002 on an unmasked client frame
            await ws.send(message)

    async def main():
        async with await server(echo, subprotocols=["v12.stomp"]) as srv:
            inbox = Inbox()
            conn = await wsclient.connect(url(srv), inbox, subprotocols=["v12.stomp"], origin="http://x")
            assert conn.subprotocol == "v12.stomp"
            for size in (0, 5, 125, 126, 65535, 65536, 200_000):  # every length encoding, both sides
                text = "é" * (size // 2) + "a" * (size % 2)
                await conn.send(text)
                assert await inbox.next() == text
            await conn.send(b"\x00\x01binary")
            assert await inbox.next() == b"\x00\x01binary"
            await conn.close()
            assert conn.close_code == 1000

    run(main())


def test_a_fragmented_message_arrives_whole_and_a_ping_is_answered():
    async def fragments(ws):
        await ws.send(["MESSAGE\n", "destination:/topic/x\n\n", "{}\x00"])  # three frames, one message
        await asyncio.wait_for(await ws.ping(b"are you there"), 5)  # resolves only on the matching pong
        await ws.send("after the pong")
        await ws.wait_closed()

    async def main():
        async with await server(fragments) as srv:
            inbox = Inbox()
            conn = await wsclient.connect(url(srv), inbox)
            assert await inbox.next() == "MESSAGE\ndestination:/topic/x\n\n{}\x00"
            assert await inbox.next() == "after the pong"
            await conn.close()

    run(main())


def test_the_server_closing_gives_its_code_and_sending_afterwards_is_refused():
    async def goodbye(ws):
        await ws.close(1001, "going away")

    async def main():
        async with await server(goodbye) as srv:
            conn = await wsclient.connect(url(srv), Inbox())
            assert await asyncio.wait_for(conn.closed, 5) == 1001
            with pytest.raises(wsclient.ConnectionClosedError):
                await conn.send("too late")

    run(main())


def test_a_refused_upgrade_is_a_handshake_error():
    def refuse(connection, request):
        return connection.respond(403, "no\n")

    async def main():
        async with await server(lambda ws: ws.wait_closed(), process_request=refuse) as srv:
            with pytest.raises(wsclient.HandshakeError, match="403"):
                await wsclient.connect(url(srv), Inbox())

    run(main())


def test_a_wrong_accept_key_is_a_handshake_error():
    def tamper(connection, request, response: Response):
        response.headers["Sec-WebSocket-Accept"] = "d3Jvbmc="

    async def main():
        async with await server(lambda ws: ws.wait_closed(), process_response=tamper) as srv:
            with pytest.raises(wsclient.HandshakeError, match="Accept"):
                await wsclient.connect(url(srv), Inbox())

    run(main())


def test_frames_split_anywhere_and_run_together_are_parsed_alike():
    """The bytes of several server frames, fed in pieces cut at random places (as TCP may deliver them)."""

    async def main():
        got = []
        conn = wsclient.WsConnection(lambda data, now: got.append(data))
        conn._opened = True
        messages = ["a", "b" * 126, "c" * 70_000, ""]
        stream = b"".join(wsclient.frame(wsclient.OP_TEXT, m.encode(), masked=False) for m in messages)
        stream += wsclient.frame(wsclient.OP_TEXT, b"fir", fin=False, masked=False)
        stream += wsclient.frame(wsclient.OP_CONT, b"st", masked=False)
        rng = random.Random(7)
        cuts = [*sorted(rng.sample(range(1, len(stream)), 40)), len(stream)]
        start = 0
        for cut in cuts:
            conn.data_received(stream[start:cut])
            start = cut
        assert got == [*messages, "first"]

    run(main())


def test_a_masked_server_frame_is_a_protocol_error():
    async def main():
        conn = wsclient.WsConnection(lambda data, now: None)
        conn._opened = True
        conn.data_received(wsclient.frame(wsclient.OP_TEXT, b"masked", masked=True))
        assert conn.close_code == wsclient.CLOSE_PROTOCOL_ERROR

    run(main())


def test_masking_is_its_own_inverse_and_matches_the_rfc_example():
    # RFC 6455 5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58.
    assert wsclient.mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")
    data = bytes(range(256)) * 3
    assert wsclient.mask(wsclient.mask(data, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04") == data
