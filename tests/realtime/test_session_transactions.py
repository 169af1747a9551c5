"""Transactions and acks in the STOMP session machine: no sockets, no loop, no DB."""

import pytest

from realtime.session import (
    AckReceived,
    DisconnectRequested,
    FrameHeld,
    SendRequested,
    TransactionAborted,
    TransactionBegun,
    TransactionCommitted,
    TransactionLimits,
)
from realtime.stomp import ProtocolError
from tests.realtime.test_stomp_session import connected_session, read, subscribe, wire


def one(session, command, headers=None, body=b""):
    [event] = session.receive_data(wire(command, headers, body))
    return event


def _frame(command, headers):
    return read(wire(command, headers))


def delivered(session, sid, count):
    """Deliver `count` messages to subscription `sid`; return their ack ids."""
    return [read(session.message(sid, f"m{i}".encode())).get("ack") for i in range(count)]


# -- transactions ---------------------------------------------------------------


def test_a_send_inside_a_transaction_takes_effect_only_on_commit():
    session = connected_session()
    begun = one(session, "BEGIN", {"transaction": "tx-1"})
    assert begun == TransactionBegun(_frame("BEGIN", {"transaction": "tx-1"}), "tx-1")
    held = one(session, "SEND", {"destination": "/queue/a", "transaction": "tx-1"}, b"first")
    assert isinstance(held, FrameHeld) and (held.transaction, held.destination) == ("tx-1", "/queue/a")
    one(session, "SEND", {"destination": "/topic/b", "transaction": "tx-1"}, b"second")
    commit = one(session, "COMMIT", {"transaction": "tx-1"})
    assert isinstance(commit, TransactionCommitted)
    assert [(type(e), e.destination, e.frame.body) for e in commit.events] == [
        (SendRequested, "/queue/a", b"first"),
        (SendRequested, "/topic/b", b"second"),
    ]
    assert session.open_transactions == ()


def test_an_aborted_transaction_drops_what_it_held():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client-individual")
    [ack_id] = delivered(session, "s", 1)
    one(session, "BEGIN", {"transaction": "t"})
    one(session, "SEND", {"destination": "/queue/a", "transaction": "t"}, b"dropped")
    one(session, "ACK", {"id": ack_id, "transaction": "t"})
    assert one(session, "ABORT", {"transaction": "t"}) == TransactionAborted(_frame("ABORT", {"transaction": "t"}), "t")
    assert session.open_transactions == ()
    # The ACK never happened: the message is still the client's to settle.
    assert session.unacked("s") == (ack_id,)


def test_an_ack_inside_a_transaction_settles_on_commit():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client-individual")
    first, second = delivered(session, "s", 2)
    one(session, "BEGIN", {"transaction": "t"})
    assert isinstance(one(session, "ACK", {"id": first, "transaction": "t"}), FrameHeld)
    assert isinstance(one(session, "NACK", {"id": second, "transaction": "t"}), FrameHeld)
    assert session.unacked("s") == (first, second)
    commit = one(session, "COMMIT", {"transaction": "t"})
    assert [(e.id, e.nack, e.subscription, e.ack_ids) for e in commit.events] == [
        (first, False, "s", (first,)),
        (second, True, "s", (second,)),
    ]
    assert session.unacked("s") == ()


def test_every_transaction_frame_answers_its_receipt_and_committed_frames_do_not_again():
    session = connected_session()
    receipts = []
    for command, headers in [
        ("BEGIN", {"transaction": "t"}),
        ("SEND", {"destination": "/queue/a", "transaction": "t"}),
        ("COMMIT", {"transaction": "t"}),
        ("BEGIN", {"transaction": "u"}),
        ("ABORT", {"transaction": "u"}),
    ]:
        event = one(session, command, {**headers, "receipt": f"r-{command}-{headers['transaction']}"})
        receipts.append(read(session.receipt_for(event.frame)).get("receipt-id"))
        if isinstance(event, TransactionCommitted):
            assert [session.receipt_for(e.frame) for e in event.events] == [b""]
    assert receipts == ["r-BEGIN-t", "r-SEND-t", "r-COMMIT-t", "r-BEGIN-u", "r-ABORT-u"]


@pytest.mark.parametrize(
    ("command", "headers"),
    [
        ("SEND", {"destination": "/queue/a", "transaction": "nope"}),
        ("ACK", {"id": "x", "transaction": "nope"}),
        ("NACK", {"id": "x", "transaction": "nope"}),
        ("COMMIT", {"transaction": "nope"}),
        ("ABORT", {"transaction": "nope"}),
    ],
)
def test_an_unknown_transaction_is_an_error_carrying_the_receipt(command, headers):
    session = connected_session()
    one(session, "BEGIN", {"transaction": "open"})
    with pytest.raises(ProtocolError, match="unknown transaction") as info:
        session.receive_data(wire(command, {**headers, "receipt": "r9"}))
    assert info.value.receipt_id == "r9"
    assert read(session.error(info.value)).get("receipt-id") == "r9"
    assert session.closed and session.open_transactions == ()


@pytest.mark.parametrize("end", [None, "COMMIT", "ABORT"])
def test_a_reused_transaction_id_is_an_error(end):
    session = connected_session()
    one(session, "BEGIN", {"transaction": "t"})
    if end is not None:
        one(session, end, {"transaction": "t"})
    with pytest.raises(ProtocolError, match="transaction id reused"):
        session.receive_data(wire("BEGIN", {"transaction": "t"}))


@pytest.mark.parametrize("end", ["COMMIT", "ABORT"])
def test_a_finished_transaction_cannot_be_committed_or_aborted_again(end):
    session = connected_session()
    one(session, "BEGIN", {"transaction": "t"})
    one(session, end, {"transaction": "t"})
    with pytest.raises(ProtocolError, match="unknown transaction"):
        session.receive_data(wire("COMMIT" if end == "ABORT" else "ABORT", {"transaction": "t"}))


def test_commit_and_abort_need_a_transaction_id():
    for command in ("COMMIT", "ABORT"):
        with pytest.raises(ProtocolError, match="missing transaction header"):
            connected_session().receive_data(wire(command))


def test_disconnect_aborts_the_transactions_left_open():
    session = connected_session()
    one(session, "BEGIN", {"transaction": "t"})
    one(session, "SEND", {"destination": "/queue/a", "transaction": "t"}, b"never")
    # Nothing is committed by the DISCONNECT that follows in the same data.
    events = session.receive_data(wire("DISCONNECT", {"receipt": "bye"}) + wire("COMMIT", {"transaction": "t"}))
    assert [type(e) for e in events] == [DisconnectRequested]
    assert session.open_transactions == ()


def test_transactions_are_bounded():
    limits = TransactionLimits(open=2, frames=2, bytes=10)
    session = connected_session(limits=limits)
    one(session, "BEGIN", {"transaction": "a"})
    one(session, "BEGIN", {"transaction": "b"})
    with pytest.raises(ProtocolError, match="too many transactions"):
        session.receive_data(wire("BEGIN", {"transaction": "c"}))
    session = connected_session(limits=limits)
    one(session, "BEGIN", {"transaction": "a"})
    with pytest.raises(ProtocolError, match="transaction too large"):
        session.receive_data(wire("SEND", {"destination": "/queue/a", "transaction": "a"}, b"x" * 11))
    session = connected_session(limits=limits)
    one(session, "BEGIN", {"transaction": "a"})
    for _ in range(2):
        one(session, "SEND", {"destination": "/queue/a", "transaction": "a"}, b"x")
    with pytest.raises(ProtocolError, match="transaction too large"):
        session.receive_data(wire("SEND", {"destination": "/queue/a", "transaction": "a"}, b"x"))


def test_only_a_bounded_number_of_finished_ids_is_remembered():
    session = connected_session(limits=TransactionLimits(remembered=2))
    for tx in ("a", "b", "c"):
        one(session, "BEGIN", {"transaction": tx})
        one(session, "COMMIT", {"transaction": tx})
    assert isinstance(one(session, "BEGIN", {"transaction": "a"}), TransactionBegun)
    with pytest.raises(ProtocolError, match="transaction id reused"):
        session.receive_data(wire("BEGIN", {"transaction": "c"}))


# -- acks -------------------------------------------------------------------------


def test_client_mode_acks_are_cumulative():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client")
    ids = delivered(session, "s", 4)
    ack = one(session, "ACK", {"id": ids[2]})
    assert (ack.subscription, ack.ack_ids) == ("s", tuple(ids[:3]))
    assert session.unacked("s") == (ids[3],)


def test_client_mode_nacks_are_cumulative_too():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client")
    ids = delivered(session, "s", 3)
    nack = one(session, "NACK", {"id": ids[1]})
    assert (nack.nack, nack.ack_ids) == (True, tuple(ids[:2]))


def test_client_individual_acks_settle_one_message():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client-individual")
    ids = delivered(session, "s", 3)
    assert one(session, "ACK", {"id": ids[1]}).ack_ids == (ids[1],)
    assert session.unacked("s") == (ids[0], ids[2])


def test_acks_settle_per_subscription():
    session = connected_session()
    subscribe(session, "a", "/queue/a", ack="client")
    subscribe(session, "b", "/queue/b", ack="client")
    a1 = delivered(session, "a", 1)[0]
    b1 = delivered(session, "b", 1)[0]
    a2 = delivered(session, "a", 1)[0]
    assert one(session, "ACK", {"id": a2}).ack_ids == (a1, a2)
    assert session.unacked("b") == (b1,)


def test_an_ack_for_nothing_pending_settles_nothing():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client-individual")
    [ack_id] = delivered(session, "s", 1)
    one(session, "ACK", {"id": ack_id})
    for unknown in (ack_id, "never-sent"):
        assert one(session, "ACK", {"id": unknown}) == AckReceived(_frame("ACK", {"id": unknown}), unknown, False)


def test_unsubscribing_forgets_what_the_subscription_had_pending():
    session = connected_session()
    subscribe(session, "s", "/queue/a", ack="client")
    [ack_id] = delivered(session, "s", 1)
    session.unsubscribe(one(session, "UNSUBSCRIBE", {"id": "s"}))
    assert session.unacked("s") == ()
    assert one(session, "ACK", {"id": ack_id}).ack_ids == ()


def test_auto_mode_leaves_nothing_to_ack_and_every_message_has_a_last_id():
    session = connected_session()
    subscribe(session, "s", "/queue/a")
    message = read(session.message("s", b"x"))
    assert message.get("ack") is None and session.unacked("s") == ()
    assert session.last_message_id == message.get("message-id")


def test_a_client_that_never_acks_does_not_grow_the_pending_table():
    session = connected_session(limits=TransactionLimits(unacked=3))
    subscribe(session, "s", "/queue/a", ack="client-individual")
    ids = delivered(session, "s", 5)
    assert session.unacked("s") == tuple(ids[2:])
    assert one(session, "ACK", {"id": ids[0]}).ack_ids == ()
