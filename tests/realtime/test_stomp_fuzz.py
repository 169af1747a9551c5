"""Property tests: round-trips hold, chunking is invisible, garbage only raises StompError."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.session import StompSession
from realtime.stomp import Frame, Heartbeat, Parser, StompError, serialize

# No example database: these tests must not write files into the tree.
FAST = settings(deadline=None, max_examples=150, database=None, suppress_health_check=[HealthCheck.too_slow])

# Header text that stresses escaping: the four escaped characters plus unicode.
header_text = st.text(
    alphabet=st.one_of(st.sampled_from(":\n\r\\ "), st.characters(codec="utf-8", exclude_characters="\0")),
    max_size=20,
)
header_names = header_text.filter(bool)
headers = st.lists(st.tuples(header_names, header_text), max_size=6).map(
    # A content-length header we did not compute would (rightly) be refused.
    lambda pairs: tuple(p for p in pairs if p[0] != "content-length")
)
body_frames = st.builds(Frame, st.sampled_from(["SEND", "MESSAGE", "ERROR"]), headers, st.binary(max_size=200))
frame_lists = st.lists(body_frames, min_size=1, max_size=5)

COMMANDS = [b"CONNECT", b"STOMP", b"SUBSCRIBE", b"UNSUBSCRIBE", b"SEND", b"ACK", b"NACK", b"DISCONNECT", b"FOO"]
HEADER_LINES = [
    b"id:0",
    b"id:1",
    b"destination:/a",
    b"destination:/b",
    b"receipt:r",
    b"receipt:r\\c\\n",
    b"ack:client",
    b"message-id:m",
    b"accept-version:1.2",
    b"accept-version:1.0,1.1",
    b"heart-beat:1,1",
]
BROKEN_LINES = [b"ack:bogus", b"accept-version:9", b"heart-beat:x", b"content-length:-1", b"x:\\t", b"x:\\", b":"]


def mostly(common, rare, one_in=8):
    """Draw from `common`, but from `rare` about once in `one_in` draws."""
    # sampled_from, not integers: hypothesis favours integer bounds, which
    # would make the "rare" branch common.
    return st.sampled_from([False] * (one_in - 1) + [True]).flatmap(lambda pick: rare if pick else common)


# Nearly valid frames, so the fuzzing reaches the session's checks, not just
# the parser's first line; now and then a broken line or raw bytes slip in.
header_lines = mostly(st.sampled_from(HEADER_LINES), st.sampled_from(BROKEN_LINES) | st.binary(max_size=6), one_in=12)
near_frames = st.builds(
    lambda command, eol, lines, body, tail: command + eol + b"".join(x + eol for x in lines) + eol + body + tail,
    st.sampled_from(COMMANDS),
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(header_lines, max_size=5),
    mostly(st.just(b""), st.binary(max_size=4), one_in=12),
    mostly(st.sampled_from([b"\0", b"\0\n"]), st.just(b""), one_in=12),
)
fragments = st.one_of(st.sampled_from([b"\n", b"\r\n", b"\0", b"\\"]), st.binary(max_size=8))
garbage = st.lists(near_frames | fragments, max_size=8).map(b"".join)
# Streams of whole (if odd) frames: these get deep into the session's logic.
frame_streams = st.lists(near_frames, min_size=1, max_size=8).map(b"".join)
session_input = frame_streams | garbage


def without_added_length(frame: Frame, parsed: Frame) -> Frame:
    """Drop the content-length the serializer appended, to compare with the original."""
    if parsed.headers[len(frame.headers) :] == (("content-length", str(len(frame.body))),):
        return Frame(parsed.command, parsed.headers[: len(frame.headers)], parsed.body)
    return parsed


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@FAST
@given(body_frames)
def test_serialize_then_parse_round_trips_any_headers_and_body(frame):
    [parsed] = Parser().feed(serialize(frame))
    assert without_added_length(frame, parsed) == frame


@FAST
@given(body_frames, st.sampled_from(["1.0", "1.1", "1.2"]))
def test_round_trip_holds_in_every_version_or_serialize_refuses(frame, version):
    try:
        data = serialize(frame, version=version)
    except StompError:
        return  # e.g. a raw EOL in 1.0, or CR in 1.1: refusing is correct
    [parsed] = Parser(version=version).feed(data)
    assert without_added_length(frame, parsed) == frame


@FAST
@given(frame_lists, st.lists(st.integers(min_value=0), max_size=20), st.sampled_from([b"", b"\n", b"\r\n\n"]))
def test_any_chunking_of_a_stream_parses_identically(frames, cuts, eols):
    data = b"".join(serialize(f) + eols for f in frames)
    expected = Parser().feed(data)
    parser = Parser()
    got = [item for chunk in chunked(data, cuts) for item in parser.feed(chunk)]
    assert got == expected
    parsed = [item for item in got if not isinstance(item, Heartbeat)]
    assert [without_added_length(f, p) for f, p in zip(frames, parsed, strict=True)] == frames


@FAST
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_random_bytes_never_raise_anything_but_stomp_error(data, cuts):
    parser = Parser(max_frame_bytes=256, max_headers=4, max_header_bytes=32)
    try:
        for chunk in chunked(data, cuts):
            parser.feed(chunk)
    except StompError:
        pass


@FAST
@given(garbage, st.lists(st.integers(min_value=0), max_size=10))
def test_garbled_frames_never_raise_anything_but_stomp_error(data, cuts):
    parser = Parser(max_frame_bytes=256, max_headers=4, max_header_bytes=32)
    try:
        for chunk in chunked(data, cuts):
            parser.feed(chunk)
    except StompError:
        pass


def drive(session: StompSession, chunks: list[bytes]) -> None:
    """Act like a permissive consumer: accept everything the session asks about."""
    for chunk in chunks:
        for event in session.receive_data(chunk):
            name = type(event).__name__
            if name == "ConnectRequested":
                session.accept_connect(event)
            elif name == "SubscribeRequested":
                session.subscribe_accepted(event)
                session.message(event.id, b"{}")
            elif name == "UnsubscribeRequested":
                session.unsubscribe(event)
            elif name == "DisconnectRequested":
                session.disconnect(event)
            elif hasattr(event, "frame"):
                session.receipt_for(event.frame)


@FAST
@given(session_input, st.lists(st.integers(min_value=0), max_size=10))
def test_a_session_fed_garbage_only_raises_stomp_error_and_can_always_answer(data, cuts):
    session = StompSession(session_id="fuzz")
    try:
        drive(session, chunked(data, cuts))
    except StompError as exc:
        # Whatever went wrong, producing the ERROR frame itself must not fail.
        assert session.error(exc).startswith(b"ERROR\n")


@FAST
@given(st.sampled_from(["1.0", "1.1", "1.2"]), session_input)
def test_a_connected_session_fed_garbage_only_raises_stomp_error(version, data):
    session = StompSession(session_id="fuzz")
    drive(session, [b"CONNECT\naccept-version:%s\n\n\0" % version.encode()])
    assert session.version == version
    try:
        drive(session, [data])
    except StompError as exc:
        assert session.error(exc).startswith(b"ERROR\n")
