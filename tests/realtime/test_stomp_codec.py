"""Plain tests of the sans-I/O STOMP codec, one spec detail per test."""

import pytest

from realtime.stomp import (
    HEARTBEAT,
    Frame,
    Heartbeat,
    LimitExceeded,
    LocalProtocolError,
    Parser,
    ProtocolError,
    StompError,
    serialize,
)


def parse_one(data, **parser_options):
    """Return the single frame in `data`, ignoring heart-beats."""
    frames = [f for f in Parser(**parser_options).feed(data) if isinstance(f, Frame)]
    assert len(frames) == 1
    return frames[0]


# -- frames and headers -----------------------------------------------------


def test_it_parses_a_minimal_connect_frame():
    frame = parse_one(b"CONNECT\naccept-version:1.2\nheart-beat:10000,10000\n\n\0")
    assert frame == Frame("CONNECT", (("accept-version", "1.2"), ("heart-beat", "10000,10000")))


def test_it_accepts_stomp_as_a_command_token():
    assert parse_one(b"STOMP\naccept-version:1.2\nhost:h\n\n\0").command == "STOMP"


def test_it_leaves_command_case_alone():
    assert parse_one(b"send\ndestination:/x\n\n\0").command == "send"


def test_it_keeps_header_names_case_sensitive():
    frame = parse_one(b"SEND\nDestination:/a\ndestination:/b\n\n\0")
    assert frame.get("destination") == "/b"
    assert frame.get("Destination") == "/a"


def test_it_splits_a_header_on_the_first_colon_only():
    frame = parse_one(b"CONNECT\nhost:example.com:8000\nlogin:a:b\n\n\0")
    assert frame.get("host") == "example.com:8000"
    assert frame.get("login") == "a:b"


def test_it_does_not_unescape_connect_headers():
    frame = parse_one(b"CONNECT\nlogin:a\\cb\npasscode:x\\ty\n\n\0")
    assert frame.get("login") == "a\\cb"
    assert frame.get("passcode") == "x\\ty"


def test_it_does_not_unescape_connected_headers():
    frame = parse_one(b"CONNECTED\nversion:1.2\nserver:x\\cy\n\n\0")
    assert frame.get("server") == "x\\cy"


def test_it_unescapes_message_headers():
    frame = parse_one(b"MESSAGE\nx-odd:a\\cb\\nc\\\\d\\re\nk\\cey:v\n\n\0")
    assert frame.get("x-odd") == "a:b\nc\\d\re"
    assert frame.get("k:ey") == "v"


def test_it_rejects_an_undefined_escape():
    with pytest.raises(ProtocolError, match="escape"):
        Parser().feed(b"SEND\ndestination:/a\\tb\n\n\0")


def test_it_rejects_a_trailing_lone_backslash():
    with pytest.raises(ProtocolError, match="escape"):
        Parser().feed(b"SEND\ndestination:/a\\\n\n\0")


def test_it_never_trims_header_values():
    frame = parse_one(b"SEND\ndestination:/a\nkey: v \n\n\0")
    assert frame.get("key") == " v "


def test_it_lets_the_first_repeated_header_win_but_keeps_all():
    frame = parse_one(b"MESSAGE\nfoo:first\nfoo:second\n\n\0")
    assert frame.get("foo") == "first"
    assert frame.headers == (("foo", "first"), ("foo", "second"))


def test_get_returns_the_default_for_a_missing_header():
    assert Frame("SEND").get("nope", "dflt") == "dflt"
    assert Frame("SEND").get("nope") is None


def test_build_accepts_a_dict_or_pairs_and_encodes_a_text_body():
    assert Frame.build("SEND", {"a": "1"}, "é") == Frame("SEND", (("a", "1"),), b"\xc3\xa9")
    assert Frame.build("SEND", [("a", "1"), ("a", "2")]).headers == (
        ("a", "1"),
        ("a", "2"),
    )


def test_it_accepts_an_empty_header_value():
    assert parse_one(b"SEND\ndestination:/a\nempty:\n\n\0").get("empty") == ""


def test_it_rejects_a_header_line_without_a_colon():
    with pytest.raises(ProtocolError, match="malformed header"):
        Parser().feed(b"SEND\ndestination\n\n\0")


def test_it_rejects_a_header_with_an_empty_name():
    with pytest.raises(ProtocolError, match="malformed header"):
        Parser().feed(b"SEND\n:value\n\n\0")


def test_it_rejects_a_bare_cr_inside_a_header_line():
    with pytest.raises(ProtocolError, match="malformed header"):
        Parser().feed(b"SEND\ndestination:/a\rb\n\n\0")


def test_it_rejects_invalid_utf8_in_headers():
    with pytest.raises(ProtocolError, match="UTF-8"):
        Parser().feed(b"SEND\ndestination:/\xff\n\n\0")


def test_it_decodes_utf8_headers():
    assert parse_one("SEND\ndestination:/é€\n\n\0").get("destination") == "/é€"


def test_it_rejects_a_command_that_is_not_a_token_of_letters():
    with pytest.raises(ProtocolError, match="malformed command"):
        Parser().feed(b"SE ND\n\n\0")


def test_it_accepts_an_unknown_command_and_leaves_it_to_the_session():
    assert parse_one(b"FOO\n\n\0").command == "FOO"


# -- bodies -----------------------------------------------------------------


def test_content_length_counts_utf8_octets_of_a_multibyte_body():
    body = "héllo €".encode()
    frame = parse_one(b"SEND\ndestination:/a\ncontent-length:%d\n\n%s\0" % (len(body), body))
    assert frame.body == body
    assert len(frame.body) == 10  # 7 characters


def test_content_length_lets_the_body_contain_nul():
    frame = parse_one(b"SEND\ndestination:/a\ncontent-length:5\n\na\0b\0c\0")
    assert frame.body == b"a\0b\0c"


def test_a_content_length_body_must_still_be_followed_by_nul():
    with pytest.raises(ProtocolError, match="NUL"):
        Parser().feed(b"SEND\ndestination:/a\ncontent-length:2\n\nabc\0")


def test_without_content_length_the_body_ends_at_the_first_nul():
    parser = Parser()
    items = parser.feed(b"SEND\ndestination:/a\n\nab\0")
    assert items == [Frame("SEND", (("destination", "/a"),), b"ab")]


def test_the_first_content_length_wins():
    frame = parse_one(b"SEND\ncontent-length:2\ncontent-length:9\n\nab\0")
    assert frame.body == b"ab"


def test_it_rejects_a_malformed_content_length():
    with pytest.raises(ProtocolError, match="content-length"):
        Parser().feed(b"SEND\ncontent-length: 2\n\nab\0")


def test_it_rejects_a_body_on_subscribe():
    with pytest.raises(ProtocolError, match="body"):
        Parser().feed(b"SUBSCRIBE\nid:0\ndestination:/a\n\nhello\0")


def test_it_rejects_a_body_on_subscribe_before_the_nul_arrives():
    with pytest.raises(ProtocolError, match="body"):
        Parser().feed(b"SUBSCRIBE\nid:0\ndestination:/a\n\nh")


def test_it_rejects_a_content_length_body_on_subscribe_from_the_head():
    with pytest.raises(ProtocolError, match="body"):
        Parser().feed(b"SUBSCRIBE\nid:0\ncontent-length:5\n\n")


def test_it_allows_bodies_on_send_message_and_error():
    for command in (b"SEND", b"MESSAGE", b"ERROR"):
        assert parse_one(command + b"\n\nx\0").body == b"x"


# -- line ends, heart-beats and streaming -----------------------------------


def test_it_accepts_crlf_line_ends():
    frame = parse_one(b"SEND\r\ndestination:/a\r\nfoo:bar\r\n\r\nbody\0")
    assert frame == Frame("SEND", (("destination", "/a"), ("foo", "bar")), b"body")


def test_a_bare_lf_is_a_heartbeat():
    assert Parser().feed(HEARTBEAT) == [Heartbeat()]


def test_a_bare_crlf_is_one_heartbeat():
    assert Parser().feed(b"\r\n") == [Heartbeat()]


def test_a_lone_cr_waits_for_its_lf():
    parser = Parser()
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\n") == [Heartbeat()]


def test_it_allows_many_eols_between_and_after_frames():
    items = Parser().feed(b"\n\r\nSEND\n\na\0\n\n\r\nSEND\n\nb\0\n")
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.body for f in frames] == [b"a", b"b"]
    assert sum(isinstance(i, Heartbeat) for i in items) == 6


def test_it_parses_several_frames_from_one_feed():
    data = b"SEND\ndestination:/a\n\n1\0SEND\ndestination:/b\n\n2\0ACK\nid:x\n\n\0"
    items = Parser().feed(data)
    assert [(f.command, f.body) for f in items] == [
        ("SEND", b"1"),
        ("SEND", b"2"),
        ("ACK", b""),
    ]


def test_it_parses_a_frame_fed_one_byte_at_a_time():
    data = b"SEND\r\ndestination:/a\r\ncontent-length:3\r\n\r\na\0b\0\n"
    parser = Parser()
    items = []
    for i in range(len(data)):
        items += parser.feed(data[i : i + 1])
    assert items == [
        Frame("SEND", (("destination", "/a"), ("content-length", "3")), b"a\0b"),
        Heartbeat(),
    ]


def test_it_reassembles_a_frame_split_into_8kib_websocket_messages():
    body = b"x" * 50_000
    data = serialize(Frame.build("SEND", {"destination": "/a"}, body))
    parser = Parser()
    items = []
    for start in range(0, len(data), 8192):
        items += parser.feed(data[start : start + 8192])
    assert [f.body for f in items] == [body]


def test_it_encodes_text_input_as_utf8():
    assert parse_one("SEND\ndestination:/a\n\n€\0").body == "€".encode()


def test_after_a_protocol_error_the_parser_stays_poisoned():
    parser = Parser()
    with pytest.raises(ProtocolError):
        parser.feed(b"SE ND\n")
    with pytest.raises(ProtocolError):
        parser.feed(b"SEND\n\n\0")


# -- limits -----------------------------------------------------------------


def test_a_too_large_frame_is_rejected_while_still_buffering():
    parser = Parser(max_frame_bytes=1000)
    parser.feed(b"SEND\ndestination:/a\n\n")
    with pytest.raises(LimitExceeded, match=r"frame too large: \d+ bytes > limit"):
        parser.feed(b"x" * 2000)  # no NUL yet: we must not wait for one


def test_a_too_large_content_length_is_rejected_from_the_head():
    parser = Parser(max_frame_bytes=1000)
    with pytest.raises(LimitExceeded, match="frame too large"):
        parser.feed(b"SEND\ndestination:/a\ncontent-length:5000\n\n")


def test_a_frame_exactly_at_the_limit_is_accepted():
    data = serialize(Frame.build("SEND", {"destination": "/a"}, b"x" * 100))
    assert parse_one(data, max_frame_bytes=len(data)).body == b"x" * 100
    with pytest.raises(LimitExceeded):
        Parser(max_frame_bytes=len(data) - 1).feed(data)


def test_the_default_limit_allows_a_one_mebibyte_body():
    body = b"x" * (1024 * 1024)
    data = serialize(Frame.build("SEND", {"destination": "/a"}, body))
    assert parse_one(data).body == body


def test_too_many_headers_are_rejected():
    head = b"".join(b"h%d:v\n" % i for i in range(5))
    with pytest.raises(LimitExceeded, match="too many headers"):
        Parser(max_headers=4).feed(b"SEND\n" + head + b"\n\0")


def test_a_long_header_line_is_rejected_before_its_eol_arrives():
    parser = Parser(max_header_bytes=100)
    with pytest.raises(LimitExceeded, match="header line too long"):
        parser.feed(b"SEND\ndestination:" + b"a" * 200)


def test_a_long_command_line_is_rejected_before_its_eol_arrives():
    with pytest.raises(LimitExceeded, match="command too long"):
        Parser(max_command_bytes=16).feed(b"A" * 100)


def test_limit_errors_are_protocol_errors_with_a_short_message_and_detail():
    with pytest.raises(ProtocolError) as info:
        Parser(max_headers=0).feed(b"SEND\na:b\n")
    assert isinstance(info.value, StompError)
    assert info.value.message == "too many headers: more than 0"
    assert info.value.detail


# -- serializer -------------------------------------------------------------


def test_serialize_escapes_message_headers():
    frame = Frame.build("MESSAGE", {"x-odd": "a:b\nc\\d\re", "k:ey": "v"})
    assert serialize(frame) == b"MESSAGE\nx-odd:a\\cb\\nc\\\\d\\re\nk\\cey:v\n\n\0"


def test_header_escaping_round_trips_on_message():
    frame = Frame.build("MESSAGE", {"x-odd": "a:b\nc\\d\r", "destination": "/t"})
    assert parse_one(serialize(frame)) == frame


def test_serialize_does_not_escape_connected_headers():
    frame = Frame.build("CONNECTED", {"version": "1.2", "server": "x:y"})
    assert serialize(frame) == b"CONNECTED\nversion:1.2\nserver:x:y\n\n\0"


def test_serialize_does_not_escape_connect_headers():
    frame = Frame.build("CONNECT", {"host": "example.com:8000", "login": "a\\b"})
    data = serialize(frame)
    assert data == b"CONNECT\nhost:example.com:8000\nlogin:a\\b\n\n\0"
    assert parse_one(data) == frame


def test_serialize_refuses_an_eol_in_an_unescaped_frame():
    with pytest.raises(LocalProtocolError):
        serialize(Frame.build("CONNECTED", {"server": "a\nb"}))


def test_serialize_adds_content_length_in_utf8_octets():
    data = serialize(Frame.build("SEND", {"destination": "/a"}, "é€"))
    assert data == "SEND\ndestination:/a\ncontent-length:5\n\né€\0".encode()


def test_serialize_keeps_a_correct_content_length_and_refuses_a_wrong_one():
    ok = Frame.build("SEND", {"content-length": "2"}, b"ab")
    assert serialize(ok) == b"SEND\ncontent-length:2\n\nab\0"
    with pytest.raises(LocalProtocolError, match="content-length"):
        serialize(Frame.build("SEND", {"content-length": "3"}, b"ab"))


def test_serialize_never_emits_crlf():
    frame = Frame.build("MESSAGE", {"a\r": "\r\n", "b": "x\r\ny"}, b"body")
    assert b"\r\n" not in serialize(frame)
    assert b"\r" not in serialize(frame)


def test_serialize_refuses_a_body_on_subscribe():
    with pytest.raises(LocalProtocolError, match="body"):
        serialize(Frame.build("SUBSCRIBE", {"id": "0"}, b"x"))


def test_serialize_refuses_an_invalid_command_and_an_empty_header_name():
    with pytest.raises(LocalProtocolError):
        serialize(Frame("BAD CMD"))
    with pytest.raises(LocalProtocolError):
        serialize(Frame.build("SEND", {"": "v"}))


def test_serialize_for_1_0_does_not_escape():
    frame = Frame.build("MESSAGE", {"destination": "/a:b", "x": "c\\d"})
    assert serialize(frame, version="1.0") == b"MESSAGE\ndestination:/a:b\nx:c\\d\n\n\0"


def test_serialize_for_1_1_escapes_lf_colon_backslash_but_refuses_cr():
    frame = Frame.build("MESSAGE", {"x": "a:b\nc\\d"})
    assert serialize(frame, version="1.1") == b"MESSAGE\nx:a\\cb\\nc\\\\d\n\n\0"
    with pytest.raises(LocalProtocolError, match="CR"):
        serialize(Frame.build("MESSAGE", {"x": "a\rb"}), version="1.1")


# -- versions ---------------------------------------------------------------


def test_a_1_0_parser_does_not_unescape():
    frame = parse_one(b"MESSAGE\nx:a\\cb\\t\n\n\0", version="1.0")
    assert frame.get("x") == "a\\cb\\t"


def test_a_1_1_parser_unescapes_lf_colon_backslash():
    frame = parse_one(b"MESSAGE\nx:a\\cb\\nc\\\\d\n\n\0", version="1.1")
    assert frame.get("x") == "a:b\nc\\d"


def test_a_1_1_parser_rejects_the_cr_escape():
    with pytest.raises(ProtocolError, match="escape"):
        Parser(version="1.1").feed(b"MESSAGE\nx:a\\rb\n\n\0")


def test_switching_the_parser_version_applies_to_later_frames():
    parser = Parser()
    parser.version = "1.0"
    assert parser.feed(b"SEND\nx:a\\cb\n\n\0")[0].get("x") == "a\\cb"
