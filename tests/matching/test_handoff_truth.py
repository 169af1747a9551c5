"""A hand-off that tells the truth: a side that tried to join is never a no-show.

Each side's client reports a join (``joined``) or a failed one
(``call-failed`` with a reason); an unreachable call server ends the match as
``call_failed`` at once, nobody blamed: the counselor AVAILABLE, the customer
back at the head of its line keeping its virtual arrival, both told why.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from common import events
from matching import handoff, matcher
from matching.models import Counselor, Match
from queues.models import Registration
from queues.selectors import queue_version, registration_rank
from tests.conftest import bearer

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


@pytest.fixture(autouse=True)
def _short_join_timeout(settings):
    settings.HEARO_JOIN_TIMEOUT_SECONDS = 2


def later(seconds: float = 3):
    """Return a moment past the (short) join deadline."""
    return timezone.now() + timedelta(seconds=seconds)


def call_failed(client, match: Match, reason: str, **headers):
    return client.post(f"/api/matches/{match.id}/call-failed", {"reason": reason}, format="json", **headers)


def ended_of(published, counselor: Counselor) -> list[dict]:
    """Return the MATCH_ENDED messages the counselor was sent."""
    return [b for b in published.bodies(events.counselor_group(counselor.counselor_id)) if b["type"] == "MATCH_ENDED"]


def refreshed(*rows):
    for row in rows:
        row.refresh_from_db()
    return rows


# --- unreachable: the match ends at once -------------------------------------------------


def test_an_unreachable_call_server_ends_the_match_as_call_failed_and_nobody_is_blamed(
    api, on_shift, join, published, requested, django_capture_on_commit_callbacks
):
    counselor = on_shift()
    first = join("Mina")
    join("Jun")  # waits behind Mina
    matcher.match_pass()
    match = Match.objects.get()
    visit = match.registration
    arrival = visit.virtual_arrival
    published.clear()
    version = queue_version()

    with django_capture_on_commit_callbacks(execute=True):
        response = call_failed(api, match, "unreachable", **bearer(first["token"]))

    assert response.status_code == 200, response.content
    assert response.json()["endReason"] == "call_failed"
    match, visit, counselor = refreshed(match, visit, counselor)
    assert (match.end_reason, match.customer_failure) == ("call_failed", "unreachable")
    assert (visit.status, visit.virtual_arrival, visit.matched_at) == (S.WAITING, arrival, None)
    assert registration_rank(registration=visit) == 1  # back at the head, ahead of Jun
    assert visit.events.last().reason == "call_failed"
    assert counselor.status == C.AVAILABLE  # no call took place: no wrap-up, never AWAY
    assert list(match.events.values_list("what", flat=True)) == [
        "created",
        "call_failed:customer:unreachable",
        "ended: call_failed",
    ]
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["rank"], told["reason"], told["version"]) == ("WAITING", 1, "call_failed", version + 1)
    assert told["seq"] == visit.events.last().id
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    ended = counselor_told[0]
    assert (ended["reason"], ended["by"], ended["failure"]) == ("call_failed", "customer", "unreachable")
    assert counselor_told[1]["status"] == "AVAILABLE"
    assert published.bodies(events.QUEUE_GROUP)[0]["queues"] == ["general"]
    assert requested  # the freed counselor asks for a pass


def test_a_counselor_whose_call_server_is_unreachable_frees_both_at_once(
    matched, as_counselor, published, django_capture_on_commit_callbacks
):
    _, counselor, match = matched
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")  # the customer got in
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = call_failed(as_counselor(counselor), match, "timeout")
    assert response.status_code == 200, response.content
    match, counselor, visit = refreshed(match, counselor, match.registration)
    assert (match.end_reason, match.counselor_failure) == ("call_failed", "timeout")
    assert (counselor.status, visit.status) == (C.AVAILABLE, S.WAITING)
    (ended,) = ended_of(published, counselor)
    assert (ended["by"], ended["failure"]) == ("counselor", "timeout")
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["reason"]) == ("WAITING", "call_failed")


def test_the_failed_pair_is_not_matched_again_at_once_but_the_next_counselor_takes_the_customer(
    api, on_shift, join, waiting
):
    counselor = on_shift()
    body = join("Mina")
    matcher.match_pass()
    match = Match.objects.get()
    call_failed(api, match, "unreachable", **bearer(body["token"]))
    matcher.match_pass()
    visit = match.registration
    visit.refresh_from_db()
    assert visit.status == S.WAITING  # the same two are not retried straight away

    (later_visit,) = waiting(1)
    matcher.match_pass()
    later_visit.refresh_from_db()
    assert later_visit.status == S.MATCHED  # the counselor takes the next customer meanwhile
    assert Match.objects.get(ended_at__isnull=True).counselor == counselor

    other = on_shift()
    matcher.match_pass()
    visit.refresh_from_db()
    assert visit.status == S.MATCHED
    assert Match.objects.get(registration=visit, ended_at__isnull=True).counselor == other


def test_after_the_pause_the_same_pair_may_try_again(api, on_shift, join, settings):
    settings.HEARO_REMATCH_PAUSE_SECONDS = 5
    on_shift()
    body = join("Mina")
    matcher.match_pass()
    call_failed(api, Match.objects.get(), "unreachable", **bearer(body["token"]))
    assert matcher.match_pass().matched == []
    assert len(matcher.match_pass(now=timezone.now() + timedelta(seconds=6)).matched) == 1


# --- recorded only, then the deadline ----------------------------------------------------


def test_permission_denied_is_recorded_and_the_side_may_still_join(api, matched):
    token, _, match = matched
    response = call_failed(api, match, "permission_denied", **bearer(token))
    assert response.status_code == 200
    assert (response.json()["endReason"], response.json()["customerJoined"]) == ("", False)
    match.refresh_from_db()
    assert match.is_open and match.customer_failure == "permission_denied"
    assert match.events.filter(what="call_failed:customer:permission_denied").exists()
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    match.registration.refresh_from_db()
    assert match.registration.status == S.IN_CALL


def test_permission_denied_then_the_deadline_is_call_failed_not_a_customer_no_show(
    api, matched, published, django_capture_on_commit_callbacks
):
    token, counselor, match = matched
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    call_failed(api, match, "permission_denied", **bearer(token))
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = matcher.match_pass(now=later())

    match, visit, counselor = refreshed(match, match.registration, counselor)
    assert (result.call_failed, result.abandoned, result.requeued) == (1, 0, [visit.id])
    assert match.end_reason == "call_failed"
    assert visit.status == S.WAITING  # not EXPIRED as a no-show would be
    assert counselor.status == C.AVAILABLE
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["rank"], told["reason"]) == ("WAITING", 1, "call_failed")
    (ended,) = ended_of(published, counselor)
    assert (ended["reason"], ended["by"], ended["failure"]) == ("call_failed", "customer", "permission_denied")


def test_a_counselor_who_reported_a_failure_is_never_forced_away(matched, as_counselor):
    _, counselor, match = matched
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    call_failed(as_counselor(counselor), match, "other")
    matcher.match_pass(now=later())
    match, counselor, visit = refreshed(match, counselor, match.registration)
    assert (match.end_reason, counselor.status, visit.status) == ("call_failed", C.AVAILABLE, S.WAITING)


def test_a_counselor_who_tried_while_the_customer_never_did_sees_a_customer_no_show(matched, as_counselor):
    _, counselor, match = matched
    call_failed(as_counselor(counselor), match, "permission_denied")
    matcher.match_pass(now=later())
    match, counselor, visit = refreshed(match, counselor, match.registration)
    assert (match.end_reason, counselor.status) == ("customer_no_show", C.AVAILABLE)
    assert (visit.status, visit.left_reason) == (S.EXPIRED, "customer_no_show")


def test_only_a_counselor_that_never_tried_is_a_no_show(api, matched, published, django_capture_on_commit_callbacks):
    token, counselor, match = matched
    call_failed(api, match, "permission_denied", **bearer(token))  # the customer tried
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        matcher.match_pass(now=later())
    match, counselor, visit = refreshed(match, counselor, match.registration)
    assert (match.end_reason, counselor.status, visit.status) == ("counselor_no_show", C.AWAY, S.WAITING)
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["reason"]) == ("WAITING", "counselor_no_show")
    (ended,) = ended_of(published, counselor)
    assert (ended["reason"], ended["by"]) == ("counselor_no_show", "counselor")


def test_the_rest_state_explains_why_a_customer_is_back_in_line(api, matched):
    token, _, match = matched
    call_failed(api, match, "unreachable", **bearer(token))
    state = api.get("/api/queue/rank", **bearer(token)).json()
    assert (state["status"], state["rank"], state["reason"]) == ("WAITING", 1, "call_failed")


# --- idempotency and bad input ----------------------------------------------------------


def test_reporting_again_is_harmless(api, matched, published, django_capture_on_commit_callbacks):
    token, _, match = matched
    assert call_failed(api, match, "unreachable", **bearer(token)).status_code == 200
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        again = call_failed(api, match, "unreachable", **bearer(token))
    assert (again.status_code, again.json()["endReason"]) == (200, "call_failed")
    assert Match.objects.get().events.filter(what="ended: call_failed").count() == 1
    assert published == []  # nobody told twice


def test_the_other_sides_report_after_a_call_failed_end_is_200(api, matched, as_counselor):
    token, counselor, match = matched
    call_failed(api, match, "unreachable", **bearer(token))
    response = call_failed(as_counselor(counselor), match, "unreachable")
    assert (response.status_code, response.json()["endReason"]) == (200, "call_failed")


def test_a_report_on_a_match_ended_otherwise_is_a_json_409(api, matched):
    token, _, match = matched
    handoff.visit_cancel(registration=match.registration)
    response = call_failed(api, match, "unreachable", **bearer(token))
    assert response.status_code == 409
    assert response.json()["error"] == "match_ended"


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "gremlins"},
        {},
        {"reason": 3},
        {"reason": "other", "detail": "x" * 201},
        {"reason": "other", "surprise": True},
        ["unreachable"],
    ],
)
def test_a_bad_report_is_a_json_400_that_changes_nothing(api, matched, body):
    token, _, match = matched
    response = api.post(f"/api/matches/{match.id}/call-failed", body, format="json", **bearer(token))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    match.refresh_from_db()
    assert match.is_open and match.customer_failure == ""


def test_malformed_json_is_a_json_400(api, matched):
    token, _, match = matched
    response = api.post(
        f"/api/matches/{match.id}/call-failed", "{not json", content_type="application/json", **bearer(token)
    )
    assert (response.status_code, response.json()["error"]) == (400, "malformed_json")


def test_a_detail_is_accepted_and_logged_only(api, matched, caplog, django_capture_on_commit_callbacks):
    token, _, match = matched
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/matches/{match.id}/call-failed",
            {"reason": "other", "detail": "NotAllowedError: mic busy"},
            format="json",
            **bearer(token),
        )
    assert response.status_code == 200
    assert "NotAllowedError" not in str(response.json())
    logged = [r for r in caplog.records if getattr(r, "event", "") == "match.call_failed"]
    assert logged and logged[0].detail == "NotAllowedError: mic busy"


# --- who may report ---------------------------------------------------------------------


def test_only_the_matchs_own_sides_may_report(api, matched, on_shift, join, as_counselor):
    _, _, match = matched
    stranger = join("Other")["token"]
    for response in (
        call_failed(api, match, "unreachable", **bearer(stranger)),
        call_failed(as_counselor(on_shift()), match, "unreachable"),
    ):
        assert (response.status_code, response.json()["error"]) == (403, "not_a_participant")
    assert call_failed(api, match, "unreachable").status_code == 401
    assert call_failed(api, match, "unreachable", **bearer("garbage")).status_code == 401
    assert call_failed(api, Match(id=match.id + 999), "unreachable", **bearer(stranger)).status_code == 404
    match.refresh_from_db()
    assert match.is_open


# --- what the customer reads ------------------------------------------------------------


def test_matched_and_in_call_name_the_counselor_and_the_join_deadline(api, matched):
    token, counselor, match = matched
    state = api.get("/api/queue/rank", **bearer(token)).json()
    assert state["status"] == "MATCHED"
    assert state["counselorName"] == counselor.name != match.room_name
    assert state["joinDeadline"] == events.epoch_ms(match.join_deadline)
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    state = api.get("/api/queue/rank", **bearer(token)).json()
    assert (state["status"], state["counselorName"]) == ("IN_CALL", counselor.name)
    assert "interrupted" not in state


def test_match_ended_names_the_side_that_ended_it(api, matched, published, django_capture_on_commit_callbacks):
    token, counselor, _ = matched
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/queue/cancel", **bearer(token))
    (ended,) = ended_of(published, counselor)
    assert (ended["reason"], ended["by"]) == ("customer_cancelled", "customer")
    assert "failure" not in ended
