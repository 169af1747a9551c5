"""Wrap-up: after a call the counselor rests for the queue's wrapUpSeconds, then is AVAILABLE by itself."""

from datetime import timedelta

import pytest

from common import events
from matching import counselors, handoff, matcher
from matching.models import Counselor, CounselorEvent, Match
from queues import services as queue_services
from queues.models import Queue, Registration
from tests.support.routing import line, skills

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


def in_call(match: Match) -> None:
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")


def call_completed(counselor: Counselor, capture) -> Match:
    """Match the counselor with the head of its line, talk, and complete the call; return the match."""
    matcher.match_pass()
    match = Match.objects.get(counselor=counselor, ended_at__isnull=True)
    in_call(match)
    with capture(execute=True):
        return handoff.match_complete(match_id=match.id, counselor=counselor)


def statuses_told(published, counselor: Counselor) -> list[dict]:
    bodies = published.bodies(events.counselor_group(counselor.counselor_id))
    return [b for b in bodies if b.get("type") == "STATUS"]


def fresh(counselor: Counselor) -> Counselor:
    counselor.refresh_from_db()
    return counselor


def test_after_a_call_the_counselor_wraps_up_for_its_queues_wrap_up_seconds(
    on_shift, published, requested, django_capture_on_commit_callbacks
):
    line("youth", languages=["ko"], wrap_up_seconds=90)
    desk = skills(on_shift(), queues=["youth"], languages=["ko"])
    queue_services.registration_join(queue_id="youth")
    published.clear()
    requested.clear()

    match = call_completed(desk, django_capture_on_commit_callbacks)

    desk = fresh(desk)
    assert desk.status == C.WRAP_UP
    rest = desk.wrap_up_until - match.ended_at
    assert timedelta(seconds=90) <= rest < timedelta(seconds=91)
    (told,) = statuses_told(published, desk)
    assert (told["status"], told["wrapUpUntil"]) == ("WRAP_UP", events.epoch_ms(desk.wrap_up_until))
    assert requested == ["pass after 90 s"]


def test_the_wrap_up_is_the_one_of_the_queue_the_call_came_from(on_shift, django_capture_on_commit_callbacks):
    line("youth", languages=["ko"], wrap_up_seconds=30)
    desk = skills(on_shift(), queues=["general", "youth"], languages=["ko"])
    queue_services.registration_join(queue_id="youth")
    youth_call = call_completed(desk, django_capture_on_commit_callbacks)
    assert fresh(desk).wrap_up_until - youth_call.ended_at < timedelta(seconds=31)

    available_again(desk)
    queue_services.registration_join()  # general: the default 60 s
    general_call = call_completed(desk, django_capture_on_commit_callbacks)
    assert fresh(desk).wrap_up_until - general_call.ended_at >= timedelta(seconds=60)


def available_again(counselor: Counselor) -> None:
    counselors.counselor_set_status(counselor=fresh(counselor), status=C.AVAILABLE)


def test_a_wrapping_up_counselor_takes_nobody_until_the_wrap_up_runs_out(on_shift, django_capture_on_commit_callbacks):
    desk = on_shift()
    queue_services.registration_join()
    call_completed(desk, django_capture_on_commit_callbacks)
    until = fresh(desk).wrap_up_until
    next_customer = queue_services.registration_join().registration

    result = matcher.match_pass(now=until - timedelta(seconds=1))

    assert (result.wrap_ups_ended, result.matched) == (0, [])
    assert fresh(desk).status == C.WRAP_UP
    next_customer.refresh_from_db()
    assert next_customer.status == S.WAITING


def test_when_the_wrap_up_runs_out_the_next_pass_makes_the_counselor_available_and_may_match_it(
    on_shift, published, django_capture_on_commit_callbacks
):
    desk = on_shift()
    queue_services.registration_join()
    call_completed(desk, django_capture_on_commit_callbacks)
    until = fresh(desk).wrap_up_until
    next_customer = queue_services.registration_join().registration
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = matcher.match_pass(now=until)

    assert result.wrap_ups_ended == 1 and len(result.matched) == 1
    assert Match.objects.get(ended_at__isnull=True).registration_id == next_customer.id
    desk = fresh(desk)
    assert (desk.status, desk.wrap_up_until) == (C.BUSY, None)
    history = list(CounselorEvent.objects.filter(counselor=desk).order_by("id").values_list("to_status", "reason"))
    assert history[-2:] == [("AVAILABLE", "wrap_up_over"), ("BUSY", "matched")]
    assert [b["status"] for b in statuses_told(published, desk)] == ["AVAILABLE", "BUSY"]


def test_with_nobody_waiting_the_counselor_is_simply_available_again(
    on_shift, published, django_capture_on_commit_callbacks
):
    desk = on_shift()
    queue_services.registration_join()
    call_completed(desk, django_capture_on_commit_callbacks)
    until = fresh(desk).wrap_up_until
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert matcher.match_pass(now=until + timedelta(seconds=5)).wrap_ups_ended == 1
    desk = fresh(desk)
    assert (desk.status, desk.wrap_up_until) == (C.AVAILABLE, None)
    (told,) = statuses_told(published, desk)
    assert told["status"] == "AVAILABLE" and "wrapUpUntil" not in told


def test_a_counselor_ends_its_wrap_up_early_by_going_available(
    on_shift, as_counselor, published, requested, django_capture_on_commit_callbacks
):
    desk = on_shift()
    queue_services.registration_join()
    call_completed(desk, django_capture_on_commit_callbacks)
    profile = as_counselor(desk).get("/api/counselor/me").json()
    assert (profile["status"], profile["wrapUpUntil"]) == ("WRAP_UP", events.epoch_ms(fresh(desk).wrap_up_until))
    published.clear()
    requested.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = as_counselor(desk).post("/api/counselor/status", {"status": "AVAILABLE"}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["wrapUpUntil"]) == ("AVAILABLE", None)
    desk = fresh(desk)
    assert (desk.status, desk.wrap_up_until) == (C.AVAILABLE, None)
    assert [b["status"] for b in statuses_told(published, desk)] == ["AVAILABLE"]
    assert requested == ["pass"]  # the freed seat asks for a pass at once
    queue_services.registration_join()
    assert len(matcher.match_pass().matched) == 1


def test_a_wrapping_up_counselor_may_step_away_instead(on_shift, as_counselor, django_capture_on_commit_callbacks):
    desk = on_shift()
    queue_services.registration_join()
    call_completed(desk, django_capture_on_commit_callbacks)
    response = as_counselor(desk).post("/api/counselor/status", {"status": "AWAY"}, format="json")
    assert response.status_code == 200
    assert (fresh(desk).status, fresh(desk).wrap_up_until) == (C.AWAY, None)
    assert matcher.match_pass(now=desk.status_changed_at + timedelta(hours=1)).wrap_ups_ended == 0
    assert fresh(desk).status == C.AWAY


def test_a_queue_with_no_wrap_up_frees_the_counselor_at_once(on_shift, django_capture_on_commit_callbacks):
    Queue.objects.filter(pk=queue_services.queue_default().pk).update(wrap_up_seconds=0)
    desk = on_shift()
    queue_services.registration_join()
    call_completed(desk, django_capture_on_commit_callbacks)
    assert (fresh(desk).status, fresh(desk).wrap_up_until) == (C.AVAILABLE, None)


def test_a_match_that_ends_before_any_call_needs_no_wrap_up(on_shift):
    desk = on_shift()
    visit = queue_services.registration_join().registration
    matcher.match_pass()
    handoff.visit_cancel(registration=visit)  # cancelled while MATCHED: nobody talked
    assert fresh(desk).status == C.AVAILABLE


def test_a_call_the_customer_hangs_up_still_earns_the_wrap_up(on_shift):
    desk = on_shift()
    visit = queue_services.registration_join().registration
    matcher.match_pass()
    in_call(Match.objects.get())
    handoff.visit_cancel(registration=visit)
    assert fresh(desk).status == C.WRAP_UP
