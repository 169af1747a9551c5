"""The hand-off: join confirmations, completing a call, cancelling a matched visit."""

from datetime import timedelta

import pytest

from common import events
from matching import counselors, handoff, matcher
from matching.models import Counselor, Match
from matching.selectors import wait_stats_forget
from queues import services as queue_services
from queues.models import Queue, Registration
from tests.conftest import bearer

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


def in_call(match: Match) -> None:
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")


# --- joined ----------------------------------------------------------------------------


def test_each_side_confirms_and_both_in_makes_the_visit_in_call(
    api, matched, published, django_capture_on_commit_callbacks, as_counselor
):
    token, counselor, match = matched
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(f"/api/matches/{match.id}/joined", **bearer(token))
    assert first.status_code == 200, first.content
    assert (first.json()["customerJoined"], first.json()["counselorJoined"]) == (True, False)
    assert published == []  # nothing to tell until both are in

    with django_capture_on_commit_callbacks(execute=True):
        second = as_counselor(counselor).post(f"/api/matches/{match.id}/joined")
    assert second.json()["counselorJoined"] is True

    registration = match.registration
    registration.refresh_from_db()
    assert registration.status == S.IN_CALL and registration.in_call_at is not None
    assert registration.events.last().reason == "both_joined"
    assert list(match.events.values_list("what", flat=True)) == ["created", "customer_joined", "counselor_joined"]
    customer_id = registration.customer.customer_id
    (told,) = published.bodies(events.customer_group(customer_id))
    assert (told["status"], told["matchId"], told["roomName"]) == ("IN_CALL", match.id, match.room_name)
    assert told["identity"] == registration.customer.identity
    (started,) = published.bodies(events.counselor_group(counselor.counselor_id))
    assert (started["type"], started["matchId"], started["registrationId"]) == (
        "MATCH_STARTED",
        match.id,
        registration.id,
    )


def test_joining_twice_is_harmless(api, matched, published, django_capture_on_commit_callbacks):
    token, _, match = matched
    api.post(f"/api/matches/{match.id}/joined", **bearer(token))
    match.refresh_from_db()
    joined_at = match.customer_joined_at
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"/api/matches/{match.id}/joined", **bearer(token))
    match.refresh_from_db()
    assert again.status_code == 200 and match.customer_joined_at == joined_at
    assert match.events.filter(what="customer_joined").count() == 1


def test_only_participants_may_confirm(api, matched, on_shift, join, as_counselor):
    _, _, match = matched
    stranger = join("Other")["token"]
    other_counselor = on_shift()
    for response in (
        api.post(f"/api/matches/{match.id}/joined", **bearer(stranger)),
        as_counselor(other_counselor).post(f"/api/matches/{match.id}/joined"),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "not_a_participant"
    assert api.post(f"/api/matches/{match.id}/joined").status_code == 401
    assert api.post(f"/api/matches/{match.id + 999}/joined", **bearer(stranger)).status_code == 404


def test_confirming_an_ended_match_is_a_conflict(api, matched):
    token, _, match = matched
    handoff.visit_cancel(registration=match.registration)
    response = api.post(f"/api/matches/{match.id}/joined", **bearer(token))
    assert response.status_code == 409
    assert response.json()["error"] == "match_ended"


# --- complete --------------------------------------------------------------------------


def test_the_counselor_completes_the_call(
    matched, published, requested, django_capture_on_commit_callbacks, as_counselor
):
    _, counselor, match = matched
    in_call(match)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = as_counselor(counselor).post(f"/api/matches/{match.id}/complete")
    assert response.status_code == 200, response.content
    assert response.json()["endReason"] == "completed"

    match.refresh_from_db()
    registration = match.registration
    registration.refresh_from_db()
    counselor.refresh_from_db()
    # After a call, the queue's wrap-up (60 s by default) before the next customer.
    assert (match.end_reason, registration.status, counselor.status) == ("completed", S.COMPLETED, C.WRAP_UP)
    assert registration.left_reason == "completed"
    (told,) = published.bodies(events.customer_group(registration.customer.customer_id))
    assert (told["status"], told["reason"]) == ("COMPLETED", "completed")
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    assert (counselor_told[0]["reason"], counselor_told[1]["status"]) == ("completed", "WRAP_UP")
    assert counselor_told[1]["wrapUpUntil"] == events.epoch_ms(counselor.wrap_up_until)
    assert requested == ["pass after 60 s"]  # a pass when the wrap-up runs out


def test_completing_again_answers_the_same(matched, as_counselor):
    _, counselor, match = matched
    in_call(match)
    client = as_counselor(counselor)
    assert client.post(f"/api/matches/{match.id}/complete").status_code == 200
    assert client.post(f"/api/matches/{match.id}/complete").status_code == 200
    assert Match.objects.get().events.filter(what="ended: completed").count() == 1


def test_only_the_matchs_counselor_completes_and_only_in_call(api, matched, on_shift, as_counselor):
    token, counselor, match = matched
    response = as_counselor(counselor).post(f"/api/matches/{match.id}/complete")
    assert (response.status_code, response.json()["error"]) == (409, "not_in_call")
    in_call(match)
    response = as_counselor(on_shift()).post(f"/api/matches/{match.id}/complete")
    assert (response.status_code, response.json()["error"]) == (403, "not_your_match")
    assert api.post(f"/api/matches/{match.id}/complete", **bearer(token)).status_code == 401


def test_completed_calls_feed_the_estimated_wait(api, on_shift, waiting, join):
    Queue.objects.filter(pk=queue_services.queue_default().pk).update(wrap_up_seconds=0)  # free again at once
    desks = [on_shift(), on_shift()]
    for _ in range(3):  # three completed calls of 120 s each
        waiting(1)
        matcher.match_pass()
        match = Match.objects.get(ended_at__isnull=True)
        in_call(match)
        ended_at = handoff.match_complete(match_id=match.id, counselor=match.counselor).ended_at
        Match.objects.filter(pk=match.pk).update(counselor_joined_at=ended_at - timedelta(seconds=120))
    for counselor in desks:
        counselor.refresh_from_db()
        counselors.counselor_set_status(counselor=counselor, status=C.AWAY)
        counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)  # on shift, but not matched yet
    tokens = [join(f"w{i}")["token"] for i in range(3)]
    wait_stats_forget()
    state = api.get("/api/queue/rank", **bearer(tokens[2])).json()
    assert state["rank"] == 3
    assert state["estimatedWaitSeconds"] == 2 * 120  # ceil(3 / 2) rounds of one average call


# --- cancel ----------------------------------------------------------------------------


def test_cancelling_a_matched_visit_ends_the_match_and_frees_the_counselor(
    api, matched, published, requested, django_capture_on_commit_callbacks
):
    token, counselor, match = matched
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/queue/cancel", **bearer(token))
    assert response.json() == {"status": "CANCELLED"}

    match.refresh_from_db()
    registration = match.registration
    registration.refresh_from_db()
    counselor.refresh_from_db()
    assert match.end_reason == "customer_cancelled"
    assert (registration.status, registration.left_reason) == (S.CANCELLED, "cancelled")
    assert counselor.status == C.AVAILABLE
    (told,) = published.bodies(events.customer_group(registration.customer.customer_id))
    assert told["status"] == "CANCELLED"
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    assert counselor_told[0]["reason"] == "customer_cancelled"
    assert requested
    # idempotent, like a WAITING cancel
    assert api.post("/api/queue/cancel", **bearer(token)).json() == {"status": "CANCELLED"}


def test_cancelling_in_a_call_ends_it_too(api, matched):
    token, counselor, match = matched
    in_call(match)
    assert api.post("/api/queue/cancel", **bearer(token)).json() == {"status": "CANCELLED"}
    match.refresh_from_db()
    counselor.refresh_from_db()
    # A call took place: the counselor wraps it up before the next one.
    assert (match.end_reason, counselor.status) == ("customer_cancelled", C.WRAP_UP)


def test_cancelling_while_waiting_behaves_as_before(api, join, published, django_capture_on_commit_callbacks):
    body = join("Mina")
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/queue/cancel", **bearer(body["token"]))
    assert response.json() == {"status": "CANCELLED"}
    assert len(published.bodies(events.QUEUE_GROUP)) == 1
    registration = Registration.objects.get()
    assert (registration.status, registration.left_reason) == (S.CANCELLED, "cancelled")


def test_a_finished_visit_cannot_be_cancelled(api, matched):
    token, counselor, match = matched
    in_call(match)
    handoff.match_complete(match_id=match.id, counselor=counselor)
    response = api.post("/api/queue/cancel", **bearer(token))
    assert (response.status_code, response.json()["error"]) == (409, "not_cancellable")


# --- history ---------------------------------------------------------------------------


def test_the_admin_shows_a_visits_timeline(admin_client, matched):
    _, counselor, match = matched
    in_call(match)
    handoff.match_complete(match_id=match.id, counselor=counselor)
    page = admin_client.get(f"/admin/queues/registration/{match.registration_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    for step in ("WAITING → MATCHED", "customer_joined", "IN_CALL → COMPLETED", "ended: completed"):
        assert step in html


def test_a_counselor_heartbeat_needs_a_shift(on_shift, as_counselor):
    counselor = on_shift(C.OFFLINE)
    response = as_counselor(counselor).post("/api/counselor/heartbeat")
    assert (response.status_code, response.json()["error"]) == (409, "not_on_shift")
    counselors.counselor_set_status(counselor=counselor, status=C.AWAY)
    response = as_counselor(counselor).post("/api/counselor/heartbeat")
    assert response.status_code == 200 and response.json()["leaseExpiresAt"] > 0


def test_queue_services_still_cancel_a_waiting_visit_directly(waiting):
    (visit,) = waiting(1)
    assert queue_services.registration_cancel(registration=visit) == S.CANCELLED
