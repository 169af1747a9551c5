"""LiveKit webhooks as the server-side truth of a call: joins, leaves, the grace to come back, the room's end."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common import events
from matching import handoff, matcher
from matching.models import Counselor, Match
from queues.models import Registration
from queues.selectors import registration_rank
from tests.conftest import bearer
from tests.matching.test_livekit import joined_event, webhook

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


@pytest.fixture(autouse=True)
def _webhook_secret_and_short_timeouts(settings):
    # The development secret ("secret", as livekit-server --dev) is too short for HS256.
    settings.LIVEKIT_API_SECRET = "a-test-secret-long-enough-for-hs256-keys"
    settings.HEARO_JOIN_TIMEOUT_SECONDS = 2
    settings.HEARO_RECONNECT_GRACE_SECONDS = 30


def event(kind: str, match: Match, identity: str = "") -> dict:
    body = joined_event(match, identity) | {"event": kind}
    if kind == "room_finished":
        body.pop("participant")
    return body


def sides(match: Match) -> tuple[str, str]:
    return match.registration.customer.identity, match.counselor.identity


def call_by_webhooks(api, match: Match) -> None:
    customer, counselor = sides(match)
    assert webhook(api, event("participant_joined", match, customer)).json() == {"counted": True}
    assert webhook(api, event("participant_joined", match, counselor)).json() == {"counted": True}


def ended_of(published, counselor: Counselor) -> list[dict]:
    """Return the MATCH_ENDED messages the counselor was sent."""
    return [b for b in published.bodies(events.counselor_group(counselor.counselor_id)) if b["type"] == "MATCH_ENDED"]


def refreshed(*rows):
    for row in rows:
        row.refresh_from_db()
    return rows


def after_grace(seconds: float = 31):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_join_by_webhook_counts_as_trying_so_the_side_is_no_no_show(api, matched):
    _, counselor, match = matched
    customer, _ = sides(match)
    webhook(api, event("participant_joined", match, customer))
    matcher.match_pass(now=timezone.now() + timedelta(seconds=3))
    match, counselor = refreshed(match, counselor)
    # The customer got in, the counselor never tried: the counselor's no-show, not the customer's.
    assert (match.end_reason, counselor.status) == ("counselor_no_show", C.AWAY)


def test_a_side_leaving_a_call_interrupts_it_and_both_are_told(
    api, matched, published, django_capture_on_commit_callbacks
):
    token, counselor, match = matched
    call_by_webhooks(api, match)
    customer, _ = sides(match)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = webhook(api, event("participant_left", match, customer))

    assert response.json() == {"counted": True}
    match, visit = refreshed(match, match.registration)
    assert match.is_open and visit.status == S.IN_CALL  # interrupted, not ended
    assert match.interrupted_side == "customer"
    assert timedelta(seconds=29) < match.reconnect_until - timezone.now() <= timedelta(seconds=30)
    until = events.epoch_ms(match.reconnect_until)
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert told["status"] == "IN_CALL"
    assert told["interrupted"] == {"side": "customer", "reconnectUntil": until}
    assert told["seq"] == visit.events.last().id and visit.events.last().reason == "call_interrupted"
    (interrupted,) = published.bodies(events.counselor_group(counselor.counselor_id))
    assert interrupted | {"timestamp": 0} == {
        "type": "MATCH_INTERRUPTED",
        "matchId": match.id,
        "side": "customer",
        "reconnectUntil": until,
        "timestamp": 0,
    }
    state = api.get("/api/queue/rank", **bearer(token)).json()
    assert state["interrupted"] == {"side": "customer", "reconnectUntil": until}
    assert match.events.filter(what="interrupted: customer", actor="livekit").exists()


def test_the_side_coming_back_resumes_the_call(api, matched, published, django_capture_on_commit_callbacks):
    token, counselor, match = matched
    call_by_webhooks(api, match)
    customer, _ = sides(match)
    webhook(api, event("participant_left", match, customer))
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(api, event("participant_joined", match, customer)).json() == {"counted": True}

    match, visit = refreshed(match, match.registration)
    assert (match.interrupted_side, match.reconnect_until) == ("", None)
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert told["status"] == "IN_CALL" and "interrupted" not in told
    assert told["seq"] == visit.events.last().id and visit.events.last().reason == "call_resumed"
    (resumed,) = published.bodies(events.counselor_group(counselor.counselor_id))
    assert (resumed["type"], resumed["matchId"]) == ("MATCH_RESUMED", match.id)
    assert "interrupted" not in api.get("/api/queue/rank", **bearer(token)).json()
    # The resumed call does not run out any more.
    matcher.match_pass(now=after_grace(3600))
    match.refresh_from_db()
    assert match.is_open


def test_a_rest_join_resumes_the_call_too(api, matched):
    token, counselor, match = matched
    call_by_webhooks(api, match)
    webhook(api, event("participant_left", match, counselor.identity))
    response = api.post(f"/api/matches/{match.id}/joined", **bearer(token))  # the other side: no resume
    assert response.json()["interruptedSide"] == "counselor"
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    match.refresh_from_db()
    assert match.interrupted_side == ""


def test_a_customer_who_never_comes_back_ends_the_visit_as_call_dropped(
    api, matched, published, django_capture_on_commit_callbacks
):
    _, counselor, match = matched
    call_by_webhooks(api, match)
    customer, _ = sides(match)
    webhook(api, event("participant_left", match, customer))
    assert matcher.match_pass(now=timezone.now()).dropped == 0  # not before the grace runs out
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = matcher.match_pass(now=after_grace())

    match, visit, counselor = refreshed(match, match.registration, counselor)
    assert result.dropped == 1 and result.requeued == []
    assert match.end_reason == "call_dropped"
    assert (visit.status, visit.left_reason) == (S.COMPLETED, "call_dropped")
    assert counselor.status == C.WRAP_UP  # a call took place
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["reason"]) == ("COMPLETED", "call_dropped")
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    assert (counselor_told[0]["reason"], counselor_told[0]["by"]) == ("call_dropped", "customer")


def test_a_counselor_who_never_comes_back_puts_the_customer_back_at_the_head(
    api, on_shift, join, published, django_capture_on_commit_callbacks
):
    counselor = on_shift()
    join("Mina")
    join("Jun")
    matcher.match_pass()
    match = Match.objects.get()
    arrival = match.registration.virtual_arrival
    call_by_webhooks(api, match)
    webhook(api, event("participant_left", match, counselor.identity))
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = matcher.match_pass(now=after_grace())

    match, visit, counselor = refreshed(match, match.registration, counselor)
    assert match.end_reason == "call_dropped"
    # Jun was matched to the freed counselor in the same pass; Mina keeps her place, first in line.
    assert result.requeued == [visit.id]
    assert (visit.status, visit.virtual_arrival) == (S.WAITING, arrival)
    assert registration_rank(registration=visit) == 1
    told = published.bodies(events.customer_group(visit.customer.customer_id))
    assert [(b["status"], b["rank"], b["reason"]) for b in told] == [("WAITING", 1, "call_dropped")]
    (ended,) = ended_of(published, counselor)
    assert (ended["reason"], ended["by"]) == ("call_dropped", "counselor")
    statuses = [e.to_status for e in counselor.events.order_by("id")]
    assert statuses[-2:] == [C.AVAILABLE, C.BUSY]  # AVAILABLE, then the next customer


def test_a_repeated_leave_changes_nothing(api, matched, published, django_capture_on_commit_callbacks):
    _, _, match = matched
    call_by_webhooks(api, match)
    customer, _ = sides(match)
    webhook(api, event("participant_left", match, customer))
    match.refresh_from_db()
    until = match.reconnect_until
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(api, event("participant_left", match, customer)).json() == {"counted": False}
    match.refresh_from_db()
    assert match.reconnect_until == until and published == []


def test_the_other_side_leaving_too_is_recorded_and_the_first_deadline_stands(api, matched):
    _, counselor, match = matched
    call_by_webhooks(api, match)
    customer, _ = sides(match)
    webhook(api, event("participant_left", match, customer))
    assert webhook(api, event("participant_left", match, counselor.identity)).json() == {"counted": True}
    match.refresh_from_db()
    assert match.interrupted_side == "customer"
    assert match.events.filter(what="counselor_left").exists()


def test_leaving_before_the_call_started_is_recorded_only(api, matched):
    _, _, match = matched
    customer, _ = sides(match)
    webhook(api, event("participant_joined", match, customer))
    assert webhook(api, event("participant_left", match, customer)).json() == {"counted": True}
    match.refresh_from_db()
    assert match.interrupted_side == "" and match.reconnect_until is None
    assert match.events.filter(what="customer_left").exists()


def test_room_finished_after_a_call_completes_it(api, matched, published, django_capture_on_commit_callbacks):
    _, counselor, match = matched
    call_by_webhooks(api, match)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(api, event("room_finished", match)).json() == {"counted": True}
    match, visit, counselor = refreshed(match, match.registration, counselor)
    assert match.end_reason == "completed"
    assert (visit.status, visit.left_reason) == (S.COMPLETED, "completed")
    assert counselor.status == C.WRAP_UP
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["reason"]) == ("COMPLETED", "completed")
    assert webhook(api, event("room_finished", match)).json() == {"counted": False}  # a retry


def test_room_finished_before_the_call_started_is_call_failed(
    api, matched, published, django_capture_on_commit_callbacks
):
    _, counselor, match = matched
    webhook(api, event("participant_joined", match, sides(match)[0]))
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(api, event("room_finished", match)).json() == {"counted": True}
    match, visit, counselor = refreshed(match, match.registration, counselor)
    assert (match.end_reason, visit.status, counselor.status) == ("call_failed", S.WAITING, C.AVAILABLE)
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["rank"], told["reason"]) == ("WAITING", 1, "call_failed")


def test_webhooks_after_the_match_ended_or_from_strangers_are_ignored(api, matched, as_counselor):
    _, counselor, match = matched
    call_by_webhooks(api, match)
    assert webhook(api, event("participant_left", match, "customer-someone-else")).json() == {"counted": False}
    assert webhook(api, event("track_published", match, counselor.identity)).json() == {"counted": False}
    handoff.match_complete(match_id=match.id, counselor=counselor)
    for kind in ("participant_left", "participant_joined"):
        assert webhook(api, event(kind, match, counselor.identity)).json() == {"counted": False}
    match.refresh_from_db()
    assert (match.end_reason, match.interrupted_side) == ("completed", "")


def test_a_badly_signed_leave_is_a_json_401_and_changes_nothing(api, matched):
    _, _, match = matched
    call_by_webhooks(api, match)
    body = event("participant_left", match, sides(match)[0])
    response = webhook(api, body, secret="not-the-secret-but-as-long-as-a-real-one")
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")
    match.refresh_from_db()
    assert match.interrupted_side == ""


def test_a_reloaded_dashboard_reads_the_join_deadline_and_the_interruption(api, matched):
    from matching.dashboard import dashboard_open_match

    _, counselor, match = matched
    shown = dashboard_open_match(counselor=counselor)
    assert (shown["joinDeadline"], shown["interrupted"]) == (events.epoch_ms(match.join_deadline), None)
    call_by_webhooks(api, match)
    webhook(api, event("participant_left", match, counselor.identity))
    (match,) = refreshed(match)
    shown = dashboard_open_match(counselor=counselor)
    assert shown["interrupted"] == {"side": "counselor", "reconnectUntil": events.epoch_ms(match.reconnect_until)}
