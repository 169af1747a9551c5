"""The matcher pass: rows written and events published on commit."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from common import events
from matching import matcher, pairing
from matching.models import Counselor, CounselorEvent, Match, MatchEvent
from queues import leases
from queues.models import Registration
from queues.selectors import queue_version

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


def customer_bodies(published, registration: Registration) -> list[dict]:
    return published.bodies(events.customer_group(registration.customer.customer_id))


def counselor_bodies(published, counselor: Counselor) -> list[dict]:
    return published.bodies(events.counselor_group(counselor.counselor_id))


def queue_changes(published) -> list[dict]:
    """The broadcasts' type and version (which queues, and why, are checked where they matter)."""
    return [{"type": m["type"], "version": m["version"]} for m in published.bodies(events.QUEUE_GROUP)]


def run_pass(capture, **kwargs) -> matcher.MatchPassResult:
    with capture(execute=True):
        return matcher.match_pass(**kwargs)


def test_pairing_gives_the_head_of_the_queue_the_longest_idle_counselor():
    assert pairing.pairs(["r1", "r2", "r3"], ["c_idle_longest", "c_next"]) == [
        ("r1", "c_idle_longest"),
        ("r2", "c_next"),
    ]
    assert pairing.pairs([], ["c"]) == []


def test_a_pass_pairs_the_earliest_customers_with_the_longest_idle_counselors(
    on_shift, waiting, published, django_capture_on_commit_callbacks
):
    first_idle, second_idle = on_shift(name="first"), on_shift(name="second")
    a, b, c = waiting(3)
    published.clear()
    version = queue_version()

    result = run_pass(django_capture_on_commit_callbacks)

    assert len(result.matched) == 2
    pairs = set(Match.objects.values_list("registration_id", "counselor_id"))
    assert pairs == {(a.id, first_idle.id), (b.id, second_idle.id)}
    for registration in (a, b):
        registration.refresh_from_db()
        assert registration.status == S.MATCHED and registration.matched_at is not None
        assert registration.events.last().reason == "matched"
    c.refresh_from_db()
    assert c.status == S.WAITING
    for counselor in (first_idle, second_idle):
        counselor.refresh_from_db()
        assert counselor.status == C.BUSY
        assert CounselorEvent.objects.filter(counselor=counselor, to_status=C.BUSY, actor="matcher").exists()
    assert MatchEvent.objects.filter(what="created").count() == 2
    # one queue change for the whole pass, however many were paired
    assert queue_changes(published) == [{"type": "queue.changed", "version": version + 1}]


def test_both_sides_are_told_their_own_identity_room_and_match(
    on_shift, waiting, published, django_capture_on_commit_callbacks
):
    counselor = on_shift()
    (registration,) = waiting(1)
    published.clear()

    run_pass(django_capture_on_commit_callbacks)

    match = Match.objects.get()
    customer = registration.customer
    (told_customer,) = customer_bodies(published, registration)
    assert told_customer | {"timestamp": 0} == {
        "customerId": customer.customer_id,
        "registrationId": registration.id,
        "queueId": "general",
        "status": "MATCHED",
        "identity": customer.identity,
        "roomName": match.room_name,
        "matchId": match.id,
        "counselorName": counselor.name,  # whom the customer will talk to (never the room name)
        "joinDeadline": events.epoch_ms(match.join_deadline),
        "timestamp": 0,
        "seq": registration.events.order_by("id").last().id,  # the MATCHED history row
    }
    assigned = [b for b in counselor_bodies(published, counselor) if b.get("type") == "MATCH_ASSIGNED"]
    assert len(assigned) == 1
    assert assigned[0]["identity"] == counselor.identity != customer.identity
    assert (assigned[0]["registrationId"], assigned[0]["customerId"]) == (registration.id, customer.customer_id)
    assert (assigned[0]["roomName"], assigned[0]["matchId"]) == (match.room_name, match.id)
    assert (assigned[0]["queueId"], assigned[0]["language"], assigned[0]["urgent"]) == ("general", "ko", False)
    assert assigned[0]["joinDeadline"] == events.epoch_ms(match.join_deadline)
    statuses = [b["status"] for b in counselor_bodies(published, counselor) if b.get("type") == "STATUS"]
    assert statuses == ["BUSY"]


def test_room_names_are_unguessable_and_distinct(on_shift, waiting):
    on_shift(), on_shift()
    waiting(2)
    matcher.match_pass()
    names = list(Match.objects.values_list("room_name", flat=True))
    assert len(set(names)) == 2 and all(len(name) >= 24 for name in names)


def test_the_rank_endpoint_carries_the_match_once_matched(api, on_shift, join):
    on_shift()
    body = join("Mina")
    matcher.match_pass()
    state = api.get("/api/queue/rank", HTTP_AUTHORIZATION=f"Bearer {body['token']}").json()
    match = Match.objects.get()
    assert state["status"] == "MATCHED"
    assert (state["matchId"], state["roomName"]) == (match.id, match.room_name)


@pytest.mark.parametrize("status", [C.AWAY, C.OFFLINE])
def test_counselors_who_are_not_available_get_no_match(on_shift, waiting, status):
    on_shift(status)
    waiting(1)
    assert matcher.match_pass().matched == []


def test_a_deactivated_counselor_gets_no_match(on_shift, waiting):
    counselor = on_shift()
    counselor.user.is_active = False
    counselor.user.save()
    waiting(1)
    assert matcher.match_pass().matched == []


def test_a_pass_with_nothing_to_do_publishes_nothing(on_shift, published, django_capture_on_commit_callbacks):
    on_shift()
    published.clear()
    result = run_pass(django_capture_on_commit_callbacks)
    assert result.matched == [] and published == []


def test_ghost_customers_expire_first_and_are_told(on_shift, waiting, published, django_capture_on_commit_callbacks):
    on_shift()
    ghost, live = waiting(2)
    Registration.objects.filter(pk=ghost.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases.lease_drop("registration", ghost.id)
    published.clear()

    result = run_pass(django_capture_on_commit_callbacks)

    ghost.refresh_from_db()
    assert (ghost.status, ghost.left_reason) == (S.EXPIRED, "lease_expired")
    assert customer_bodies(published, ghost)[-1]["status"] == "EXPIRED"
    assert result.expired == 1
    assert Match.objects.get().registration_id == live.id  # the ghost was never matched


def test_a_ghost_counselor_goes_offline_and_gets_no_match(
    on_shift, waiting, published, django_capture_on_commit_callbacks
):
    ghost = on_shift()
    waiting(1)
    leases.lease_drop("counselor", ghost.id)
    Counselor.objects.filter(pk=ghost.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    published.clear()

    result = run_pass(django_capture_on_commit_callbacks)

    ghost.refresh_from_db()
    assert ghost.status == C.OFFLINE and result.counselors_offline == 1 and result.matched == []
    assert CounselorEvent.objects.filter(counselor=ghost, to_status=C.OFFLINE, reason="lease_expired").exists()
    assert counselor_bodies(published, ghost)[-1]["status"] == "OFFLINE"


def test_a_heart_beating_counselor_with_a_stale_database_copy_stays_on_shift(on_shift, waiting):
    counselor = on_shift()
    Counselor.objects.filter(pk=counselor.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    waiting(1)
    result = matcher.match_pass()
    counselor.refresh_from_db()
    assert result.counselors_offline == 0 and len(result.matched) == 1
    assert counselor.lease_expires_at > timezone.now()


def test_a_closed_dashboards_copy_is_refreshed_no_later_than_its_lease_and_it_gets_no_match_after(
    on_shift, waiting, settings
):
    """The dashboard was closed 30 s after its last beat: its lease has 10 s left when a pass reads it."""
    from django.core.cache import cache

    ghost = on_shift()
    Counselor.objects.filter(pk=ghost.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    runs_out = timezone.now() + timedelta(seconds=10)
    cache.set(leases.lease_key("counselor", ghost.id), int(runs_out.timestamp() * 1000), timeout=60)
    assert matcher.match_pass().counselors_offline == 0
    ghost.refresh_from_db()
    step = timedelta(seconds=settings.HEARO_MATCH_INTERVAL_SECONDS)
    assert ghost.status == C.AVAILABLE and runs_out - step < ghost.lease_expires_at <= runs_out
    # Its lease runs out; the first pass after that takes it off shift before it could match anyone.
    leases.lease_drop("counselor", ghost.id)
    waiting(1)
    result = matcher.match_pass(now=runs_out + timedelta(seconds=1))
    ghost.refresh_from_db()
    assert (ghost.status, result.counselors_offline, result.matched) == (C.OFFLINE, 1, [])


def test_a_ghost_counselor_in_a_match_gives_its_customer_back_to_the_queue(
    on_shift, waiting, published, django_capture_on_commit_callbacks
):
    ghost = on_shift()
    (registration,) = waiting(1)
    matcher.match_pass()
    leases.lease_drop("counselor", ghost.id)
    Counselor.objects.filter(pk=ghost.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    published.clear()

    result = run_pass(django_capture_on_commit_callbacks)

    assert result.requeued == [registration.id]
    registration.refresh_from_db()
    ghost.refresh_from_db()
    assert registration.status == S.WAITING and ghost.status == C.OFFLINE
    assert Match.objects.get().end_reason == "counselor_lost"
    assert customer_bodies(published, registration)[-1]["rank"] == 1


def test_the_database_refuses_a_second_open_match_for_a_counselor(on_shift, waiting):
    counselor = on_shift()
    a, b = waiting(2)
    deadline = timezone.now()
    Match.objects.create(registration=a, counselor=counselor, join_deadline=deadline)
    with pytest.raises(IntegrityError), transaction.atomic():
        Match.objects.create(registration=b, counselor=counselor, join_deadline=deadline)


def test_a_pair_the_database_refuses_is_skipped_not_the_whole_pass(on_shift, waiting, caplog):
    blocked, free = on_shift(), on_shift()
    stale, a, b = waiting(3)
    # An open match the pass cannot see (its registration is not MATCHED):
    # the constraint is the last line of defense and refuses the new pair.
    Match.objects.create(registration=stale, counselor=blocked, join_deadline=timezone.now() + timedelta(hours=1))
    Registration.objects.filter(pk=stale.pk).update(status=S.CANCELLED)

    result = matcher.match_pass()

    assert len(result.matched) == 1
    assert Match.objects.get(pk=result.matched[0]).counselor_id == free.id
    assert "refused to pair" in caplog.text
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, b.status) == (S.WAITING, S.MATCHED)  # the refused pair left no trace
    assert not a.events.filter(to_status=S.MATCHED).exists()


def test_after_the_cache_lost_every_lease_nobody_is_sent_offline(on_shift, waiting):
    from django.core.cache import cache

    counselor = on_shift()
    leases.lease_drop("counselor", counselor.id)
    Counselor.objects.filter(pk=counselor.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    cache.delete(leases.EPOCH_KEY)  # as after Redis restarted empty

    result = matcher.match_pass()

    counselor.refresh_from_db()
    assert result.counselors_offline == 0 and counselor.status == C.AVAILABLE
    assert counselor.lease_expires_at > timezone.now()  # one lease of grace to beat again
