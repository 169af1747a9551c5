"""Join timeouts: nobody is lost when a side never shows up (timeouts set short)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common import events
from matching import handoff, matcher
from matching.models import Counselor, Match
from queues.models import Registration
from queues.selectors import queue_version, registration_rank

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


@pytest.fixture(autouse=True)
def _short_join_timeout(settings):
    settings.HEARO_JOIN_TIMEOUT_SECONDS = 2


def later(seconds: float = 3):
    """Return a moment past the (short) join deadline."""
    return timezone.now() + timedelta(seconds=seconds)


def matched_pair(on_shift, waiting, n_waiting: int = 1):
    counselor = on_shift()
    visits = waiting(n_waiting)
    matcher.match_pass()
    return counselor, visits, Match.objects.get()


def test_a_counselor_no_show_puts_the_customer_back_at_rank_1(
    on_shift, waiting, published, django_capture_on_commit_callbacks
):
    counselor, (first, _), match = matched_pair(on_shift, waiting, n_waiting=2)
    original_enqueued_at = first.enqueued_at
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    published.clear()
    version = queue_version()

    with django_capture_on_commit_callbacks(execute=True):
        result = matcher.match_pass(now=later())

    first.refresh_from_db()
    match.refresh_from_db()
    counselor.refresh_from_db()
    assert result.requeued == [first.id]
    assert (first.status, first.enqueued_at, first.matched_at) == (S.WAITING, original_enqueued_at, None)
    assert registration_rank(registration=first) == 1
    assert first.events.last().reason == "counselor_no_show"
    assert (match.end_reason, match.ended_at is not None) == ("counselor_no_show", True)
    assert counselor.status == C.AWAY
    assert match.events.last().what == "ended: counselor_no_show"
    told = published.bodies(events.customer_group(first.customer.customer_id))
    assert [(b["status"], b["rank"], b["version"]) for b in told] == [("WAITING", 1, version + 1)]
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    assert counselor_told[0]["reason"] == "counselor_no_show" and counselor_told[1]["status"] == "AWAY"
    # One change of order for the pass; the counselor going AWAY is a staffing change (estimates
    # move, the order does not), announced apart without a new version.
    changes = published.bodies(events.QUEUE_GROUP)
    assert [(m["version"], m["reason"]) for m in changes if m["reason"] != "staffing"] == [(version + 1, "requeued")]
    assert [m["queues"] for m in changes if m["reason"] == "staffing"] == [["general"]]


def test_a_requeued_customer_is_matched_again_by_the_next_free_counselor(on_shift, waiting):
    _, (first,), _ = matched_pair(on_shift, waiting)
    on_shift()  # another counselor, free in time for the same pass
    result = matcher.match_pass(now=later())
    first.refresh_from_db()
    assert result.requeued == [first.id] and len(result.matched) == 1
    assert first.status == S.MATCHED
    assert Match.objects.filter(registration=first).count() == 2


def test_a_customer_no_show_frees_the_counselor(
    on_shift, waiting, published, requested, django_capture_on_commit_callbacks
):
    counselor, (visit,), match = matched_pair(on_shift, waiting)
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = matcher.match_pass(now=later())

    visit.refresh_from_db()
    match.refresh_from_db()
    counselor.refresh_from_db()
    assert result.abandoned == 1 and result.requeued == []
    assert (visit.status, visit.left_reason) == (S.EXPIRED, "customer_no_show")
    assert match.end_reason == "customer_no_show"
    assert counselor.status == C.AVAILABLE
    told = published.bodies(events.customer_group(visit.customer.customer_id))
    assert [(b["status"], b["reason"]) for b in told] == [("EXPIRED", "customer_no_show")]
    counselor_told = published.bodies(events.counselor_group(counselor.counselor_id))
    assert [b["type"] for b in counselor_told] == ["MATCH_ENDED", "STATUS"]
    assert counselor_told[1]["status"] == "AVAILABLE"
    assert requested  # the freed counselor asks for a pass at once
    assert published.bodies(events.QUEUE_GROUP) == []  # nobody in the queue moved


def test_when_neither_side_joins_the_customer_is_requeued_and_the_counselor_goes_away(on_shift, waiting):
    counselor, (visit,), match = matched_pair(on_shift, waiting)
    matcher.match_pass(now=later())
    visit.refresh_from_db()
    counselor.refresh_from_db()
    match.refresh_from_db()
    assert (visit.status, counselor.status, match.end_reason) == (S.WAITING, C.AWAY, "counselor_no_show")


def test_nothing_times_out_before_the_deadline_or_once_both_joined(on_shift, waiting):
    _, (visit,), match = matched_pair(on_shift, waiting)
    assert matcher.match_pass(now=timezone.now()).requeued == []
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    result = matcher.match_pass(now=later(3600))
    visit.refresh_from_db()
    assert result.requeued == [] and result.abandoned == 0
    assert visit.status == S.IN_CALL


def test_the_join_deadline_comes_from_the_setting(on_shift, waiting):
    _, _, match = matched_pair(on_shift, waiting)
    assert timedelta(seconds=1) < match.join_deadline - match.created_at < timedelta(seconds=3)
