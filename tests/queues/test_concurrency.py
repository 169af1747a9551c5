"""Races the database must settle, run for real on PostgreSQL."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from common.errors import Conflict
from queues import leases, services
from queues.models import Registration

S = Registration.Status


def race(n: int, action) -> list:
    """Run ``action`` (or action[i] for a list) in n threads released at once.

    Return each thread's result or exception.
    """
    actions = action if isinstance(action, list) else [action] * n
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = actions[i]()
        except Exception as exc:  # collected and asserted on by the caller
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_rejoins_by_one_customer_create_one_waiting_registration(postgres):
    first = services.registration_join(display_name="Mina")
    services.registration_cancel(registration=first.registration)
    for _ in range(5):
        results = race(8, lambda: services.registration_join(token=first.token))
        winners = [r for r in results if isinstance(r, services.JoinResult)]
        losers = [r for r in results if isinstance(r, Conflict)]
        assert len(winners) == 1 and len(losers) == 7, results
        customer = first.registration.customer
        assert Registration.objects.filter(customer=customer, status=S.WAITING).count() == 1
        services.registration_cancel(registration=winners[0].registration)


@pytest.mark.django_db(transaction=True)
def test_concurrent_joins_get_distinct_consecutive_versions(postgres):
    from queues.selectors import queue_version

    before = queue_version()
    results = race(10, lambda: services.registration_join())
    assert all(isinstance(r, services.JoinResult) for r in results), results
    assert queue_version() == before + 10


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_the_sweep_leaves_the_registration_in_exactly_one_state(postgres):
    for _ in range(10):
        registration = services.registration_join().registration
        Registration.objects.filter(pk=registration.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        leases.lease_drop("registration", registration.id)
        results = race(
            2,
            [
                lambda r=registration: services.registration_cancel(registration=Registration.objects.get(pk=r.pk)),
                lambda: services.registration_expire_ghosts(),
            ],
        )
        registration.refresh_from_db()
        assert registration.status in (S.CANCELLED, S.EXPIRED)
        # one transition recorded out of WAITING, whoever won
        assert registration.events.exclude(to_status=S.WAITING).count() == 1, results
