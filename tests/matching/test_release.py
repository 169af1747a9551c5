"""A counselor can always release an open match: the customer keeps its place and is told."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common import events
from common.errors import Conflict
from matching import handoff, matcher
from matching.models import Counselor, Match
from queues import services as queue_services
from queues.models import Registration
from queues.selectors import registration_rank
from tests.conftest import bearer
from tests.matching.test_concurrency import assert_no_double_assignment, round_reset
from tests.queues.test_concurrency import race

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


def release(client, match: Match, body: dict | None = None, **headers):
    return client.post(f"/api/matches/{match.id}/release", body or {}, format="json", **headers)


def in_call(match: Match) -> None:
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")


def test_the_counselor_releases_before_anyone_joined_and_the_customer_is_first_again(
    on_shift, join, as_counselor, published, requested, django_capture_on_commit_callbacks
):
    counselor = on_shift()
    join("Mina")
    join("Jun")
    matcher.match_pass()
    match = Match.objects.get()
    visit = match.registration
    arrival = visit.virtual_arrival
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = release(as_counselor(counselor), match, {"reason": "wrong language line"})

    assert response.status_code == 200, response.content
    assert response.json()["endReason"] == "released"
    match.refresh_from_db()
    visit.refresh_from_db()
    counselor.refresh_from_db()
    assert match.end_reason == "released"
    assert (visit.status, visit.virtual_arrival) == (S.WAITING, arrival)
    assert registration_rank(registration=visit) == 1
    assert counselor.status == C.AVAILABLE  # no call took place
    ended = match.events.get(what="ended: released")
    assert (ended.note, ended.actor) == ("wrong language line", f"counselor:{counselor.counselor_id}")
    (told,) = published.bodies(events.customer_group(visit.customer.customer_id))
    assert (told["status"], told["rank"], told["reason"]) == ("WAITING", 1, "released")
    assert "wrong language" not in str(told)  # the counselor's words are for supervisors
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    assert (counselor_told[0]["reason"], counselor_told[0]["by"]) == ("released", "counselor")
    assert "failure" not in counselor_told[0]
    assert counselor_told[1]["status"] == "AVAILABLE"
    assert requested


def test_released_after_joining_alone_frees_the_counselor_at_once(matched, as_counselor):
    _, counselor, match = matched
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")  # the customer never came
    assert release(as_counselor(counselor), match).status_code == 200
    counselor.refresh_from_db()
    match.registration.refresh_from_db()
    assert (counselor.status, match.registration.status) == (C.AVAILABLE, S.WAITING)


def test_released_during_a_call_the_counselor_wraps_up(matched, as_counselor, api):
    token, counselor, match = matched
    in_call(match)
    assert release(as_counselor(counselor), match).status_code == 200
    counselor.refresh_from_db()
    match.registration.refresh_from_db()
    assert (counselor.status, match.registration.status) == (C.WRAP_UP, S.WAITING)
    state = api.get("/api/queue/rank", **bearer(token)).json()
    assert (state["status"], state["rank"], state["reason"]) == ("WAITING", 1, "released")


def test_the_released_customer_goes_to_another_counselor_not_back_to_the_same(matched, as_counselor, on_shift):
    _, counselor, match = matched
    release(as_counselor(counselor), match)
    assert matcher.match_pass().matched == []  # the same counselor does not get it straight back
    other = on_shift()
    matcher.match_pass()
    assert Match.objects.get(ended_at__isnull=True).counselor == other


def test_releasing_again_answers_the_same(matched, as_counselor, published, django_capture_on_commit_callbacks):
    _, counselor, match = matched
    client = as_counselor(counselor)
    assert release(client, match).status_code == 200
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        again = release(client, match)
    assert (again.status_code, again.json()["endReason"]) == (200, "released")
    assert published == []
    assert Match.objects.get().events.filter(what="ended: released").count() == 1


def test_releasing_a_match_that_ended_otherwise_is_a_json_409(matched, as_counselor):
    _, counselor, match = matched
    in_call(match)
    handoff.match_complete(match_id=match.id, counselor=counselor)
    response = release(as_counselor(counselor), match)
    assert (response.status_code, response.json()["error"]) == (409, "match_ended")


def test_only_the_matchs_counselor_may_release(api, matched, on_shift, as_counselor):
    token, _, match = matched
    response = release(as_counselor(on_shift()), match)
    assert (response.status_code, response.json()["error"]) == (403, "not_your_match")
    response = release(api, match, **bearer(token))  # the customer is a side, but not the one who releases
    assert (response.status_code, response.json()["error"]) == (403, "not_your_match")
    assert release(api, match).status_code == 401
    match.refresh_from_db()
    assert match.is_open


@pytest.mark.parametrize("body", [{"reason": "x" * 201}, {"reason": 7}, {"why": "typo"}])
def test_a_bad_release_body_is_a_json_400(matched, as_counselor, body):
    _, counselor, match = matched
    response = release(as_counselor(counselor), match, body)
    assert (response.status_code, response.json()["error"]) == (400, "invalid")
    match.refresh_from_db()
    assert match.is_open


def test_releasing_an_unknown_match_is_a_json_404(matched, as_counselor):
    _, counselor, match = matched
    response = as_counselor(counselor).post(f"/api/matches/{match.id + 999}/release")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


def test_the_schema_documents_both_new_endpoints(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in ("/api/matches/{match_id}/call-failed", "/api/matches/{match_id}/release"):
        operation = schema["paths"][path]["post"]
        assert {"200", "400", "403", "409"} <= set(operation["responses"])
        assert operation["requestBody"]


# --- races (PostgreSQL) -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_release_racing_a_call_failed_report_and_the_deadline_ends_the_match_once(postgres, on_shift, settings):
    settings.HEARO_JOIN_TIMEOUT_SECONDS = 1
    settings.HEARO_REMATCH_PAUSE_SECONDS = 0  # every round pairs the same two again
    counselor = on_shift()
    for _ in range(15):
        round_reset([counselor], available=1)
        visit = queue_services.registration_join().registration
        matcher.match_pass()
        match = Match.objects.get(registration=visit, ended_at__isnull=True)
        handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
        later = timezone.now() + timedelta(seconds=5)
        results = race(
            3,
            [
                lambda m=match: handoff.match_release(match_id=m.id, counselor=counselor),
                lambda m=match: handoff.match_call_failed(
                    match_id=m.id, side="customer", reason="unreachable", detail="", actor="customer"
                ),
                lambda when=later: matcher.match_pass(now=when),
            ],
        )
        # The losers see an ended match: a 409 conflict, never anything else.
        errors = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(e, Conflict) and e.code == "match_ended" for e in errors), results
        match.refresh_from_db()
        visit.refresh_from_db()
        assert match.end_reason in ("released", "call_failed", "customer_no_show")
        assert match.events.filter(what__startswith="ended").count() == 1
        assert visit.status in (S.WAITING, S.MATCHED, S.EXPIRED)  # MATCHED: paired again by the pass
        assert_no_double_assignment()
