"""Plain tests of the STOMP session state machine: no sockets, no loop, no DB."""

import pytest

from realtime.session import (
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    HeartbeatReceived,
    SendRequested,
    StompSession,
    SubscribeRequested,
    UnsubscribeRequested,
)
from realtime.stomp import HEARTBEAT, Frame, LocalProtocolError, Parser, ProtocolError, serialize


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wire(command, headers=None, body=b""):
    return serialize(Frame.build(command, headers or {}, body))


def read(data: bytes) -> Frame:
    """Parse bytes the server produced, as a 1.2 client would."""
    [frame] = Parser().feed(data)
    return frame


def connect_event(session, headers=None):
    headers = {"accept-version": "1.0,1.1,1.2", "heart-beat": "0,0"} if headers is None else headers
    [event] = session.receive_data(wire("CONNECT", headers))
    return event


def connected_session(clock=None, client_heartbeat="0,0", **options):
    session = StompSession(session_id="sess-1", clock=clock or FakeClock(), **options)
    event = connect_event(session, {"accept-version": "1.2", "heart-beat": client_heartbeat})
    session.accept_connect(event)
    return session


def subscribe(session, sid="sub-0", destination="/topic/queue-rank/42", **headers):
    [event] = session.receive_data(wire("SUBSCRIBE", {"id": sid, "destination": destination, **headers}))
    return event, session.subscribe_accepted(event)


# -- CONNECT negotiation ------------------------------------------------------


def test_it_negotiates_1_2_when_the_client_accepts_all_versions():
    session = StompSession(session_id="s")
    event = connect_event(session)
    assert isinstance(event, ConnectRequested)
    assert event.version == "1.2"
    assert read(session.accept_connect(event)).get("version") == "1.2"
    assert session.version == "1.2"
    assert session.connected


def test_it_picks_the_highest_common_version():
    session = StompSession(session_id="s", supported_versions=("1.0", "1.1"))
    assert connect_event(session, {"accept-version": "1.2,1.1,1.0"}).version == "1.1"


def test_it_assumes_1_0_when_accept_version_is_missing():
    session = StompSession(session_id="s")
    event = connect_event(session, {"host": "h"})
    assert event.version == "1.0"
    assert read(session.accept_connect(event)).get("version") == "1.0"


def test_no_common_version_is_an_error_whose_frame_lists_supported_versions():
    session = StompSession(session_id="s")
    with pytest.raises(ProtocolError) as info:
        session.receive_data(wire("CONNECT", {"accept-version": "2.0"}))
    error = read(session.error(info.value))
    assert error.command == "ERROR"
    assert error.get("version") == "1.0,1.1,1.2"
    assert error.get("content-type") == "text/plain"
    assert b"1.0 1.1 1.2" in error.body
    assert session.closed


def test_stomp_is_treated_exactly_like_connect():
    session = StompSession(session_id="s")
    [event] = session.receive_data(b"STOMP\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:1000,1000\n\n\0")
    assert isinstance(event, ConnectRequested)
    assert (event.version, event.host, event.client_heartbeat) == ("1.2", "127.0.0.1", (1000, 1000))


def test_connect_exposes_credentials_split_on_the_first_colon_and_unescaped():
    session = StompSession(session_id="s")
    data = b"CONNECT\naccept-version:1.2\nhost:example.com:8000\nlogin:a:b\npasscode:p\\c\nAuthorization:Bearer t\n\n\0"
    [event] = session.receive_data(data)
    assert (event.host, event.login, event.passcode) == ("example.com:8000", "a:b", "p\\c")
    assert event.authorization == "Bearer t"


def test_a_connect_without_host_is_accepted_like_stompjs_sends_it():
    session = StompSession(session_id="s")
    [event] = session.receive_data(b"CONNECT\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\n\n\0")
    assert event.host is None
    assert session.accept_connect(event).startswith(b"CONNECTED\n")


def test_connected_always_carries_version_heart_beat_server_and_session():
    session = StompSession(session_id="sess-9", server_heartbeat=(0, 0))
    frame = read(session.accept_connect(connect_event(session, {"accept-version": "1.2"})))
    assert frame.get("version") == "1.2"
    assert frame.get("heart-beat") == "0,0"
    assert frame.get("server") == "HearO/1.0"
    assert frame.get("session") == "sess-9"


def test_connected_headers_are_not_escaped_and_extras_cannot_shadow_required_ones():
    session = StompSession(session_id="s", server_name="HearO/1.0 (a:b)")
    event = connect_event(session)
    data = session.accept_connect(event, extra_headers={"user-name": "x:y", "version": "9.9"})
    assert b"\nserver:HearO/1.0 (a:b)\n" in data
    assert b"\nuser-name:x:y\n" in data
    assert data.count(b"version:") == 1


def test_connected_uses_an_explicit_heartbeat_over_the_default():
    session = StompSession(session_id="s", server_heartbeat=(10000, 10000))
    event = connect_event(session, {"accept-version": "1.2", "heart-beat": "5000,5000"})
    frame = read(session.accept_connect(event, heartbeat=(2000, 3000)))
    assert frame.get("heart-beat") == "2000,3000"
    assert (session.outgoing_heartbeat_ms, session.incoming_heartbeat_ms) == (5000, 5000)


@pytest.mark.parametrize(
    ("server", "client", "outgoing", "incoming"),
    [
        ((10000, 10000), (10000, 10000), 10000, 10000),
        ((4000, 6000), (1000, 2000), 4000, 6000),  # max(sx, cy), max(cx, sy)
        ((1000, 1000), (5000, 7000), 7000, 5000),
        ((0, 10000), (10000, 10000), 0, 10000),  # we never send beats
        ((10000, 0), (10000, 10000), 10000, 0),  # we want none from the client
        ((10000, 10000), (0, 10000), 10000, 0),  # client cannot send
        ((10000, 10000), (10000, 0), 0, 10000),  # client does not want any
        ((10000, 10000), (0, 0), 0, 0),
    ],
)
def test_heart_beat_negotiation(server, client, outgoing, incoming):
    session = StompSession(session_id="s", server_heartbeat=server)
    event = connect_event(session, {"accept-version": "1.2", "heart-beat": f"{client[0]},{client[1]}"})
    session.accept_connect(event)
    assert (session.outgoing_heartbeat_ms, session.incoming_heartbeat_ms) == (outgoing, incoming)


def test_a_missing_heart_beat_header_means_zero_zero():
    session = StompSession(session_id="s")
    assert connect_event(session, {"accept-version": "1.2"}).client_heartbeat == (0, 0)


def test_a_malformed_heart_beat_header_is_rejected():
    with pytest.raises(ProtocolError, match="heart-beat"):
        connect_event(StompSession(session_id="s"), {"heart-beat": "soon"})


def test_frames_before_connect_are_rejected():
    session = StompSession(session_id="s")
    with pytest.raises(ProtocolError, match="not connected"):
        session.receive_data(wire("SUBSCRIBE", {"id": "0", "destination": "/a"}))


def test_frames_before_connected_is_sent_are_rejected():
    session = StompSession(session_id="s")
    connect_event(session)
    with pytest.raises(ProtocolError, match="not connected"):
        session.receive_data(wire("SEND", {"destination": "/a"}))


def test_a_second_connect_is_rejected():
    session = connected_session()
    with pytest.raises(ProtocolError, match="already connected"):
        session.receive_data(wire("STOMP", {"accept-version": "1.2"}))


def test_heartbeats_are_accepted_before_and_after_connect():
    session = StompSession(session_id="s")
    assert session.receive_data(b"\n\r\n") == [HeartbeatReceived(), HeartbeatReceived()]
    session.accept_connect(connect_event(session))
    assert session.receive_data(HEARTBEAT) == [HeartbeatReceived()]


def test_accepting_without_a_pending_connect_is_our_bug():
    session = connected_session()
    with pytest.raises(LocalProtocolError):
        session.accept_connect(ConnectRequested(Frame("CONNECT"), "1.2", None, None, None, (0, 0), None))


def test_accepting_1_0_switches_the_parser_to_unescaped_headers():
    session = StompSession(session_id="s")
    session.accept_connect(connect_event(session, {}))
    [event] = session.receive_data(b"SEND\ndestination:/a\\cb\n\n\0")
    assert event.destination == "/a\\cb"


# -- subscriptions --------------------------------------------------------------


def test_subscribe_is_recorded_only_once_accepted():
    session = connected_session()
    [event] = session.receive_data(wire("SUBSCRIBE", {"id": "sub-0", "destination": "/topic/a"}))
    assert event == SubscribeRequested(event.frame, "sub-0", "/topic/a", "auto")
    assert dict(session.subscriptions) == {}
    assert session.subscribe_accepted(event) == b""
    assert dict(session.subscriptions) == {"sub-0": ("/topic/a", "auto")}


def test_subscriptions_is_read_only():
    session = connected_session()
    subscribe(session)
    with pytest.raises(TypeError):
        session.subscriptions["x"] = ("/a", "auto")


def test_subscriptions_for_a_destination_lists_every_id():
    session = connected_session()
    subscribe(session, "a", "/topic/x")
    subscribe(session, "b", "/topic/y")
    subscribe(session, "c", "/topic/x")
    assert session.subscriptions_for("/topic/x") == ["a", "c"]
    assert session.subscriptions_for("/topic/none") == []


def test_a_duplicate_subscription_id_is_rejected():
    session = connected_session()
    subscribe(session, "sub-0")
    with pytest.raises(ProtocolError, match="duplicate subscription id"):
        subscribe(session, "sub-0", "/topic/other")


def test_a_duplicate_id_in_the_same_batch_is_rejected_before_acceptance():
    session = connected_session()
    data = wire("SUBSCRIBE", {"id": "x", "destination": "/a"}) + wire("SUBSCRIBE", {"id": "x", "destination": "/b"})
    with pytest.raises(ProtocolError, match="duplicate"):
        session.receive_data(data)


@pytest.mark.parametrize(
    ("command", "headers", "missing"),
    [
        ("SUBSCRIBE", {"id": "0"}, "destination"),
        ("SUBSCRIBE", {"destination": "/a"}, "id"),
        ("UNSUBSCRIBE", {}, "id"),
        ("SEND", {}, "destination"),
        ("ACK", {}, "id"),
        ("NACK", {"message-id": "m"}, "id"),
    ],
)
def test_missing_required_headers_are_rejected(command, headers, missing):
    session = connected_session()
    with pytest.raises(ProtocolError, match=f"missing {missing} header"):
        session.receive_data(wire(command, headers))


def test_an_invalid_ack_mode_is_rejected():
    session = connected_session()
    with pytest.raises(ProtocolError, match="ack mode"):
        subscribe(session, ack="sometimes")


def test_unsubscribe_by_id_removes_the_subscription():
    session = connected_session()
    subscribe(session, "sub-0", "/topic/a")
    [event] = session.receive_data(wire("UNSUBSCRIBE", {"id": "sub-0"}))
    assert event == UnsubscribeRequested("sub-0", "/topic/a", event.frame)
    assert session.unsubscribe(event) == b""
    assert dict(session.subscriptions) == {}


def test_an_id_can_be_reused_after_unsubscribe():
    session = connected_session()
    subscribe(session, "sub-0", "/topic/a")
    session.unsubscribe(session.receive_data(wire("UNSUBSCRIBE", {"id": "sub-0"}))[0])
    subscribe(session, "sub-0", "/topic/b")
    assert dict(session.subscriptions) == {"sub-0": ("/topic/b", "auto")}


def test_unsubscribing_an_unknown_id_is_harmless():
    session = connected_session()
    [event] = session.receive_data(wire("UNSUBSCRIBE", {"id": "nope"}))
    assert event.destination is None
    assert session.unsubscribe(event) == b""


# -- MESSAGE and ACK ---------------------------------------------------------


def test_message_carries_subscription_destination_and_unique_message_ids():
    session = connected_session()
    subscribe(session, "sub-0", "/topic/queue-rank/42")
    first = read(session.message("sub-0", b'{"rank":1}'))
    second = read(session.message("sub-0", b'{"rank":2}'))
    assert first.command == "MESSAGE"
    assert first.get("subscription") == "sub-0"
    assert first.get("destination") == "/topic/queue-rank/42"
    assert first.get("content-type") == "application/json"
    assert first.get("content-length") == "10"
    assert first.body == b'{"rank":1}'
    assert first.get("message-id") != second.get("message-id")
    assert first.get("message-id").startswith("sess-1")


@pytest.mark.parametrize(
    ("version", "sid", "destination", "body"),
    [
        *((version, "sub-0", "/topic/queue-rank/42", b'{"rank":1}') for version in ("1.0", "1.1", "1.2")),
        ("1.0", "0", "/q", b""),
        ("1.2", "0", "/q", b""),
        # Escaped in 1.1 and 1.2 (a colon and a backslash), a str body with a non-ASCII character.
        ("1.1", "a:b\\c", "/topic/x:y", '{"na\u00efve":2}'),
        ("1.2", "a:b\\c", "/topic/x:y", '{"na\u00efve":2}'),
    ],
)
def test_a_plain_message_from_the_pre_encoded_head_is_the_frame_serialize_would_write(version, sid, destination, body):
    # The hub's frames skip Frame and serialize (a pre-encoded head per subscription); the bytes must not differ.
    session = StompSession(session_id="sess:1", clock=FakeClock())
    session.accept_connect(connect_event(session, {"accept-version": version, "heart-beat": "0,0"}))
    subscribe(session, sid, destination)
    for number in (1, 2):
        expected = serialize(
            Frame.build(
                "MESSAGE",
                {
                    "subscription": sid,
                    "destination": destination,
                    "message-id": f"sess:1-{number}",
                    "content-type": "application/json",
                },
                body,
            ),
            version=version,
        )
        assert session.message(sid, body) == expected
        assert session.last_message_id == f"sess:1-{number}"


def test_a_subscription_id_reused_for_another_destination_gets_a_new_head():
    session = connected_session()
    subscribe(session, "sub-0", "/topic/queue-rank/1")
    assert read(session.message("sub-0", b"{}")).get("destination") == "/topic/queue-rank/1"
    unsubscribe_event = session.receive_data(wire("UNSUBSCRIBE", {"id": "sub-0"}))[0]
    session.unsubscribe(unsubscribe_event)
    subscribe(session, "sub-0", "/topic/queue-rank/2")
    assert read(session.message("sub-0", b"{}")).get("destination") == "/topic/queue-rank/2"


def test_message_ids_are_unique_across_subscriptions():
    session = connected_session()
    subscribe(session, "a", "/x")
    subscribe(session, "b", "/x")
    ids = {read(session.message(sid, b"{}")).get("message-id") for sid in ("a", "b", "a")}
    assert len(ids) == 3


def test_message_on_an_auto_subscription_has_no_ack_header():
    session = connected_session()
    subscribe(session, "sub-0")
    assert read(session.message("sub-0", b"{}")).get("ack") is None


@pytest.mark.parametrize("mode", ["client", "client-individual"])
def test_message_on_a_client_ack_subscription_carries_an_ack_id(mode):
    session = connected_session()
    subscribe(session, "sub-0", ack=mode)
    first = read(session.message("sub-0", b"{}")).get("ack")
    second = read(session.message("sub-0", b"{}")).get("ack")
    assert first and second and first != second


def test_ack_and_nack_with_the_message_ack_id_are_accepted():
    session = connected_session()
    subscribe(session, "sub-0", ack="client-individual")
    ack_id = read(session.message("sub-0", b"{}")).get("ack")
    assert session.receive_data(wire("ACK", {"id": ack_id})) == [
        AckReceived(Frame.build("ACK", {"id": ack_id}), ack_id, nack=False, subscription="sub-0", ack_ids=(ack_id,))
    ]
    [nack] = session.receive_data(wire("NACK", {"id": ack_id}))
    assert nack.nack is True


def test_an_ack_for_an_unknown_id_is_tolerated():
    session = connected_session()
    [event] = session.receive_data(wire("ACK", {"id": "never-sent"}))
    assert event.id == "never-sent"


def test_a_1_1_ack_uses_message_id():
    session = StompSession(session_id="s")
    session.accept_connect(connect_event(session, {"accept-version": "1.1"}))
    [event] = session.receive_data(wire("ACK", {"message-id": "m-1", "subscription": "0"}))
    assert event.id == "m-1"


def test_message_keeps_extra_headers_but_not_over_required_ones():
    session = connected_session()
    subscribe(session, "sub-0", "/t")
    frame = read(
        session.message("sub-0", "é", content_type="text/plain", headers={"x-k": "a:b", "destination": "/evil"})
    )
    assert frame.get("x-k") == "a:b"
    assert [v for k, v in frame.headers if k == "destination"] == ["/t"]
    assert frame.get("content-type") == "text/plain"
    assert frame.get("content-length") == "2"


def test_message_for_an_unknown_subscription_is_our_bug():
    with pytest.raises(LocalProtocolError):
        connected_session().message("nope", b"{}")


# -- SEND, receipts, DISCONNECT, ERROR ---------------------------------------------


def test_send_becomes_an_event_with_its_destination():
    session = connected_session()
    [event] = session.receive_data(wire("SEND", {"destination": "/app/leave"}, b"{}"))
    assert event == SendRequested(event.frame, "/app/leave")
    assert event.frame.body == b"{}"


@pytest.mark.parametrize(
    ("command", "headers"),
    [
        ("SUBSCRIBE", {"id": "0", "destination": "/a"}),
        ("UNSUBSCRIBE", {"id": "0"}),
        ("SEND", {"destination": "/a"}),
        ("ACK", {"id": "x"}),
    ],
)
def test_a_frame_with_receipt_gets_a_receipt(command, headers):
    session = connected_session()
    [event] = session.receive_data(wire(command, {**headers, "receipt": "r-1"}))
    if command == "SUBSCRIBE":
        data = session.subscribe_accepted(event)
    elif command == "UNSUBSCRIBE":
        data = session.unsubscribe(event)
    else:
        data = session.receipt_for(event.frame)
    assert read(data) == Frame.build("RECEIPT", {"receipt-id": "r-1"})


def test_receipt_ids_are_escaped_in_1_2():
    session = connected_session()
    [event] = session.receive_data(wire("SEND", {"destination": "/a", "receipt": "r:1\n"}))
    data = session.receipt_for(event.frame)
    assert data == b"RECEIPT\nreceipt-id:r\\c1\\n\n\n\0"


def test_disconnect_answers_with_a_receipt_and_closes():
    session = connected_session()
    [event] = session.receive_data(b"DISCONNECT\nreceipt:close-2\n\n\0")
    assert event == DisconnectRequested(event.frame, "close-2")
    assert read(session.disconnect(event)) == Frame.build("RECEIPT", {"receipt-id": "close-2"})
    assert session.closed
    assert not session.connected


def test_disconnect_without_receipt_just_closes():
    session = connected_session()
    [event] = session.receive_data(wire("DISCONNECT"))
    assert session.disconnect(event) == b""
    assert session.closed


def test_frames_after_disconnect_are_ignored():
    session = connected_session()
    events = session.receive_data(wire("DISCONNECT") + wire("SEND", {"destination": "/a"}))
    assert [type(e) for e in events] == [DisconnectRequested]
    assert session.receive_data(wire("SEND", {"destination": "/a"})) == []


def test_error_includes_receipt_id_when_the_bad_frame_had_one():
    session = connected_session()
    with pytest.raises(ProtocolError) as info:
        session.receive_data(wire("SUBSCRIBE", {"id": "0", "receipt": "r-9"}))
    frame = read(session.error(info.value))
    assert frame.get("receipt-id") == "r-9"
    assert frame.get("message") == "missing destination header"
    assert frame.get("version") is None  # only a refused CONNECT lists versions


def test_error_from_a_plain_message_has_text_body_and_closes():
    session = connected_session()
    frame = read(session.error("forbidden destination", detail="not yours", receipt_id="r"))
    assert frame == Frame.build(
        "ERROR",
        {
            "message": "forbidden destination",
            "content-type": "text/plain",
            "receipt-id": "r",
            "content-length": "9",
        },
        b"not yours",
    )
    assert session.closed


def test_a_refused_login_error_lists_versions_like_rabbitmq():
    session = StompSession(session_id="s")
    connect_event(session)
    frame = read(session.error("Bad CONNECT", detail="Access refused"))
    assert frame.get("version") == "1.0,1.1,1.2"
    assert session.closed


def test_an_unknown_command_is_rejected_with_its_name_in_the_detail():
    session = connected_session()
    with pytest.raises(ProtocolError) as info:
        session.receive_data(b"FOO\n\n\0")
    assert info.value.message == "unknown command"
    assert 'command "FOO"' in info.value.detail


def test_begin_needs_a_transaction_id():
    session = connected_session()
    with pytest.raises(ProtocolError, match="missing transaction header"):
        session.receive_data(wire("BEGIN"))


def test_after_a_protocol_error_the_session_keeps_raising():
    session = connected_session()
    with pytest.raises(ProtocolError):
        session.receive_data(b"FOO\n\n\0")
    with pytest.raises(ProtocolError):
        session.receive_data(HEARTBEAT)


def test_a_frame_split_across_receive_calls_yields_one_event():
    session = connected_session()
    data = wire("SEND", {"destination": "/a"}, b"x" * 20000)
    events = []
    for start in range(0, len(data), 8192):
        events += session.receive_data(data[start : start + 8192])
    assert [e.frame.body for e in events] == [b"x" * 20000]


# -- heart-beat timing ---------------------------------------------------------


def test_peer_times_out_after_twice_its_interval_of_silence():
    clock = FakeClock()
    session = connected_session(clock, client_heartbeat="1000,0", server_heartbeat=(0, 1000))
    assert session.incoming_heartbeat_ms == 1000
    clock.now += 1.9
    assert not session.peer_timed_out()
    session.receive_data(HEARTBEAT)
    clock.now += 1.9
    assert not session.peer_timed_out()
    clock.now += 0.2
    assert session.peer_timed_out()


def test_any_partial_data_counts_as_liveness():
    clock = FakeClock()
    session = connected_session(clock, client_heartbeat="1000,0", server_heartbeat=(0, 1000))
    clock.now += 1.5
    session.receive_data(b"SEN")
    clock.now += 1.5
    assert not session.peer_timed_out()


def test_peer_never_times_out_without_incoming_heartbeats():
    clock = FakeClock()
    session = connected_session(clock, client_heartbeat="0,0")
    clock.now += 10_000
    assert not session.peer_timed_out()


def test_the_timeout_tolerance_is_configurable():
    clock = FakeClock()
    session = connected_session(clock, "1000,0", server_heartbeat=(0, 1000), heartbeat_tolerance=1.5)
    assert not session.peer_timed_out(clock.now + 1.4)
    assert session.peer_timed_out(clock.now + 1.6)


def test_heartbeat_is_due_after_an_outgoing_interval_of_our_silence():
    clock = FakeClock()
    session = connected_session(clock, client_heartbeat="0,2000", server_heartbeat=(1000, 0))
    assert session.outgoing_heartbeat_ms == 2000
    assert session.next_heartbeat_in() == pytest.approx(2.0)
    clock.now += 1.5
    assert not session.heartbeat_due()
    assert session.next_heartbeat_in() == pytest.approx(0.5)
    clock.now += 0.5
    assert session.heartbeat_due()
    assert session.heartbeat() == HEARTBEAT == b"\n"
    assert not session.heartbeat_due()


def test_any_frame_we_send_postpones_the_next_heartbeat():
    clock = FakeClock()
    session = connected_session(clock, client_heartbeat="0,1000", server_heartbeat=(1000, 0))
    subscribe(session, "s", "/a")
    clock.now += 0.9
    session.message("s", b"{}")
    clock.now += 0.9
    assert not session.heartbeat_due()


def test_no_heartbeats_are_due_when_none_were_negotiated():
    session = connected_session(client_heartbeat="0,0")
    assert session.next_heartbeat_in() is None
    assert not session.heartbeat_due(10**9)


def test_data_arriving_after_the_error_frame_is_ignored():
    session = connected_session()
    with pytest.raises(ProtocolError):
        session.receive_data(b"FOO\n\n\0")
    session.error("bad")
    assert session.receive_data(wire("SEND", {"destination": "/a"})) == []
