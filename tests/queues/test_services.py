"""Queue services: rows written and events published on commit."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common import events
from common.errors import Conflict
from matching import matcher
from queues import leases, selectors, services
from queues.models import Registration, RegistrationEvent

pytestmark = pytest.mark.django_db
S = Registration.Status


def joined(n: int) -> list[Registration]:
    return [services.registration_join(display_name=f"c{i}").registration for i in range(n)]


def rank(registration: Registration) -> int | None:
    registration.refresh_from_db()
    return selectors.registration_rank(registration=registration)


def test_rank_counts_waiting_registrations_ahead_in_enqueue_order():
    a, b, c = joined(3)
    assert [rank(r) for r in (a, b, c)] == [1, 2, 3]


def test_same_enqueue_time_is_ordered_by_id():
    a, b = joined(2)
    Registration.objects.update(enqueued_at=a.enqueued_at)
    assert (rank(a), rank(b)) == (1, 2)


def test_ranks_close_up_after_a_cancel_in_the_middle():
    a, b, c = joined(3)
    services.registration_cancel(registration=b)
    assert (rank(a), rank(b), rank(c)) == (1, None, 2)


def test_join_records_history_and_bumps_the_version(published, django_capture_on_commit_callbacks):
    before = selectors.queue_version()
    with django_capture_on_commit_callbacks(execute=True):
        registration = services.registration_join(display_name="x").registration
    assert selectors.queue_version() == before + 1
    history = list(RegistrationEvent.objects.filter(registration=registration).values_list("to_status", "reason"))
    assert history == [("WAITING", "joined")]
    assert published == [
        (
            events.QUEUE_GROUP,
            {"type": "queue.changed", "version": before + 1, "queues": ["general"], "reason": "joined"},
        )
    ]


def test_a_rejoin_racing_an_active_visit_is_refused_and_publishes_nothing(
    published, django_capture_on_commit_callbacks
):
    old = services.registration_join()
    services.registration_cancel(registration=old.registration)
    services.registration_join(token=old.token)  # the other tab won
    published.clear()
    count = Registration.objects.count()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Conflict) as caught:
        services.registration_join(token=old.token)
    assert caught.value.code == "already_queued"
    assert Registration.objects.count() == count
    assert published == []


def test_the_database_refuses_two_active_registrations_for_one_customer():
    first = services.registration_join().registration
    with pytest.raises(IntegrityError), transaction.atomic():
        Registration.objects.create(
            customer=first.customer,
            queue=first.queue,
            language=first.language,
            enqueued_at=timezone.now(),
            virtual_arrival=timezone.now(),
            queue_since=timezone.now(),
            token_hash="x" * 64,
            lease_expires_at=timezone.now(),
        )


def test_heartbeat_renews_the_cache_lease_without_writing_the_database():
    registration = joined(1)[0]
    leases.lease_drop("registration", registration.id)
    before = registration.lease_expires_at
    expires_at = services.registration_heartbeat(registration=registration)
    assert expires_at > timezone.now() + timedelta(seconds=39)
    registration.refresh_from_db()
    assert registration.lease_expires_at == before
    assert leases.lease_alive("registration", [registration.id]) == {registration.id}


def test_after_the_cache_lost_every_lease_the_sweep_refreshes_instead_of_expiring():
    """Redis restarted empty: nobody is expired; the copies get a full lease to re-beat."""
    from tests.conftest import cache_forget_all

    a, b = joined(2)
    Registration.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    cache_forget_all()  # every lease and the epoch marker are gone
    assert services.registration_expire_ghosts() == []
    a.refresh_from_db()
    assert a.status == S.WAITING and a.lease_expires_at > timezone.now() + timedelta(seconds=30)
    assert leases.leases_intact()
    # One lease later, whoever did not beat again is a ghost after all.
    leases.lease_renew("registration", b.id)
    later = timezone.now() + timedelta(seconds=41)
    assert [r.id for r in services.registration_expire_ghosts(now=later)] == [a.id]


def test_a_fresh_start_with_nobody_waiting_logs_no_lost_lease_warning(caplog):
    """An empty cache on a fresh start is not news; with someone waiting it is."""
    from tests.conftest import cache_forget_all

    cache_forget_all()
    with caplog.at_level("WARNING"):
        matcher.match_pass()
    assert [r.message for r in caplog.records if r.levelname == "WARNING"] == []

    joined(1)
    cache_forget_all()
    with caplog.at_level("WARNING"):
        matcher.match_pass()
    assert any("nobody expired" in r.message for r in caplog.records if r.levelname == "WARNING")


def test_a_live_lease_refreshes_the_copy_no_later_than_itself_so_the_first_sweep_after_it_finds_the_ghost():
    """The page was closed 28 s after its last beat: the lease has 12 s left when a sweep reads it.

    A copy of a full lease from the sweep's time kept the ghost in line (and
    matchable) for 40 s more; the copy is now the lease's own expiry, floored.
    """
    from django.core.cache import cache

    (ghost,) = joined(1)
    Registration.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    runs_out = timezone.now() + timedelta(seconds=12)
    cache.set(leases.lease_key("registration", ghost.id), int(runs_out.timestamp() * 1000), timeout=60)
    assert services.registration_expire_ghosts() == []
    ghost.refresh_from_db()
    step = timedelta(seconds=settings.HEARO_MATCH_INTERVAL_SECONDS)
    assert runs_out - step < ghost.lease_expires_at <= runs_out
    # The cache drops the lease when it runs out; the first sweep after that finds the ghost.
    leases.lease_drop("registration", ghost.id)
    assert [r.id for r in services.registration_expire_ghosts(now=runs_out + timedelta(seconds=1))] == [ghost.id]


def test_heartbeat_of_a_cancelled_visit_is_a_conflict():
    registration = joined(1)[0]
    services.registration_cancel(registration=registration)
    with pytest.raises(Conflict):
        services.registration_heartbeat(registration=registration)


def test_sweep_expires_only_ghosts_and_tells_each_of_them(published, django_capture_on_commit_callbacks):
    ghost, alive, quiet = joined(3)
    past = timezone.now() - timedelta(seconds=1)
    Registration.objects.update(lease_expires_at=past)  # every database copy is stale
    leases.lease_drop("registration", ghost.id)
    leases.lease_drop("registration", quiet.id)
    leases.lease_renew("registration", alive.id)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        expired = services.registration_expire_ghosts()
    assert {r.id for r in expired} == {ghost.id, quiet.id}
    alive.refresh_from_db()
    assert alive.status == S.WAITING and rank(alive) == 1
    assert alive.lease_expires_at > timezone.now()  # the stale copy was refreshed
    ghost.refresh_from_db()
    assert (ghost.status, ghost.left_reason) == (S.EXPIRED, "lease_expired")
    told = published.bodies(events.customer_group(ghost.customer.customer_id))
    assert [m["status"] for m in told] == ["EXPIRED"]
    assert published.groups().count(events.QUEUE_GROUP) == 1  # one change per sweep


def test_sweep_keeps_a_customer_whose_database_copy_is_fresh_even_with_no_cache_lease():
    """Redis lost every lease (a restart): the database copy still protects recent beaters."""
    registration = joined(1)[0]
    leases.lease_drop("registration", registration.id)
    assert services.registration_expire_ghosts() == []
    registration.refresh_from_db()
    assert registration.status == S.WAITING


def test_a_cancel_broadcasts_the_queue_change_before_the_leavers_own_message(
    published, django_capture_on_commit_callbacks
):
    leaving, behind = joined(2)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.registration_cancel(registration=leaving)
    # Everyone behind waits on the broadcast; the one leaving has its answer in the response.
    assert published.groups() == [events.QUEUE_GROUP, events.customer_group(leaving.customer.customer_id)]
    assert published[1][1]["body"]["status"] == "CANCELLED"
    assert rank(behind) == 1


def test_a_cancel_of_a_visit_just_read_goes_straight_to_the_conditional_update():
    registration = services.registration_join(display_name="x").registration
    registration = Registration.objects.select_related("customer").get(pk=registration.pk)  # as the API reads it
    with CaptureQueriesContext(connection) as queries:
        assert services.registration_cancel(registration=registration) == S.CANCELLED
    statements = [q["sql"].split()[0] for q in queries.captured_queries if 'queues_registration"' in q["sql"]]
    assert statements[0] == "UPDATE"  # no second look at a row the caller just read


def test_cancel_after_expiry_is_a_conflict_not_a_silent_success():
    registration = joined(1)[0]
    Registration.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases.lease_drop("registration", registration.id)
    services.registration_expire_ghosts()
    with pytest.raises(Conflict) as caught:
        services.registration_cancel(registration=registration)
    assert caught.value.code == "not_cancellable"


def test_ranks_after_expiry_close_up():
    a, b, c = joined(3)
    Registration.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases.lease_drop("registration", a.id)
    services.registration_expire_ghosts()
    assert (rank(b), rank(c)) == (1, 2)


def test_queue_snapshot_lists_waiting_customers_in_rank_order_with_the_version():
    a, b, c = joined(3)
    services.registration_cancel(registration=b)
    snapshot = selectors.queue_snapshot()
    assert snapshot.waiting == [(a.id, a.customer.customer_id), (c.id, c.customer.customer_id)]
    assert snapshot.version == selectors.queue_version()


def test_join_signals_the_matcher_after_commit(django_capture_on_commit_callbacks):
    from queues import signals

    heard = []

    def receiver(sender, reason, **kwargs):
        heard.append(reason)

    signals.queue_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.registration_join()
            assert heard == []
        assert heard == ["joined"]
    finally:
        signals.queue_changed.disconnect(receiver)


def test_every_message_about_a_visit_carries_a_seq_that_only_goes_up(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        joined = services.registration_join()
    from matching.selectors import registration_state  # the visit's state spans both apps

    snapshot = registration_state(registration=joined.registration)
    with django_capture_on_commit_callbacks(execute=True):
        services.registration_cancel(registration=joined.registration)
    (cancelled,) = published.bodies(events.customer_group(joined.registration.customer.customer_id))
    assert snapshot["seq"] < cancelled["seq"] == selectors.registration_seq(registration_id=joined.registration.id)
