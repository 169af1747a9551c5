"""Writers that overlap never wait on each other in a circle (PostgreSQL); each race was found by the soak.

A join or a settings change to a queue and the matcher's overflow into it: the
overflow's UPDATE of ``registration.queue_id`` has its foreign-key check
deferred to COMMIT (Django's FKs are DEFERRABLE INITIALLY DEFERRED), so its FOR
KEY SHARE on the target queue row comes after the pass locked the queue version
row; a writer that locked the queue row FOR UPDATE and then wanted the version
row closed the circle. Two ghost sweeps at once: see the last test.
"""

import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from queues import leases, services, staff
from queues.models import Customer, Queue, Registration, RegistrationEvent

pytestmark = [pytest.mark.django_db(transaction=True)]


def waiting_in_youth() -> Registration:
    services.queue_default()
    Queue.objects.create(queue_id="youth", name_ko="청소년", name_en="Youth", languages=["ko"])
    return waiting_in("youth")


def waiting_in(queue_id: str, token: str = "x") -> Registration:
    now = timezone.now()
    customer = Customer.objects.create()
    return Registration.objects.create(
        customer=customer,
        queue_id=queue_id,
        language="ko",
        enqueued_at=now,
        virtual_arrival=now,
        queue_since=now,
        token_hash=token * 64,
        lease_expires_at=now,
    )


def race_with_an_overflow_into_general(writer) -> list:
    """Run the overflow's lock pattern and ``writer`` (which locks general, then the version) together."""
    registration = waiting_in_youth()
    services.queue_version_bump()
    errors: list = []
    overflowed, writer_locked = threading.Event(), threading.Event()

    def matcher():
        try:
            with transaction.atomic():
                Registration.objects.filter(pk=registration.pk).update(queue_id="general")  # the overflow
                services.queue_version_bump()  # queue_changed: the pass's last lock
                overflowed.set()
                writer_locked.wait(5)  # the writer now holds general and waits for the version row
            # COMMIT: the deferred FK check wants FOR KEY SHARE on general
        except OperationalError as exc:
            errors.append(("matcher", str(exc).splitlines()[0]))
        finally:
            connection.close()

    def other():
        overflowed.wait(5)
        try:
            with transaction.atomic():
                writer(writer_locked)
        except OperationalError as exc:
            errors.append(("writer", str(exc).splitlines()[0]))
        finally:
            connection.close()

    threads = [threading.Thread(target=matcher), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_a_join_to_the_queue_an_overflow_moves_into_does_not_deadlock(postgres):
    def join(locked):
        services.queue_for_join(queue_id="general")  # the join's lock on its queue
        threading.Timer(0.3, locked.set).start()
        services.queue_version_bump()

    assert race_with_an_overflow_into_general(join) == []


def test_a_staff_change_to_the_queue_an_overflow_moves_into_does_not_deadlock(postgres):
    def configure(locked):
        threading.Timer(0.3, locked.set).start()
        staff.queue_store(fields={"queue_id": "general", "max_waiting": 50}, actor="staff:test", create=False)

    assert race_with_an_overflow_into_general(configure) == []


def test_two_ghost_sweeps_that_disagree_about_a_lease_do_not_deadlock(postgres, monkeypatch):
    """Two workers sweep at once; a heartbeat lands between their lease reads.

    The keeper sees the second customer's lease alive and renews its copy (a
    lock on that row), the expirer sees both run out and expires the first,
    then the second. Rows locked as each sweep reached them closed a circle
    (the soak's ``deadlock detected … while updating tuple``); a sweep now
    claims its candidates before it reads a lease, and skips those another holds.
    """
    services.queue_default()
    first, second = waiting_in("general", "a"), waiting_in("general", "b")
    leases.leases_mark_intact()
    keeper_read, keeper_locked, expirer_left_first = threading.Event(), threading.Event(), threading.Event()
    errors: list = []
    lease_copies_refresh, registration_leave = leases.lease_copies_refresh, services.registration_leave
    beaten = int((timezone.now() + timedelta(seconds=30)).timestamp() * 1000)

    def alive(kind, idents):
        if threading.current_thread().name == "keeper":
            keeper_read.set()
            return {second.id: beaten} if second.id in idents else {}
        keeper_locked.wait(5)  # the keeper holds the second customer's row
        return {}

    def renew(model, expiries):
        lease_copies_refresh(model, expiries)
        if threading.current_thread().name == "keeper":
            keeper_locked.set()
            expirer_left_first.wait(2)  # the expirer takes the first meanwhile (if it got it)

    def leave(*, registration, **kwargs):
        left = registration_leave(registration=registration, **kwargs)
        if registration.id == first.id:
            expirer_left_first.set()
        return left

    monkeypatch.setattr(leases, "lease_expiries", alive)
    monkeypatch.setattr(leases, "lease_copies_refresh", renew)
    monkeypatch.setattr(services, "registration_leave", leave)
    later = timezone.now() + timedelta(minutes=5)

    def sweep(start: threading.Event | None):
        if start is not None:
            start.wait(5)
        try:
            services.registration_expire_ghosts(now=later)
        except OperationalError as exc:
            errors.append((threading.current_thread().name, str(exc).splitlines()[0]))
        finally:
            expirer_left_first.set()
            connection.close()

    threads = [
        threading.Thread(target=sweep, args=(None,), name="keeper"),
        threading.Thread(target=sweep, args=(keeper_read,), name="expirer"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    statuses = dict(Registration.objects.filter(pk__in=(first.id, second.id)).values_list("id", "status"))
    # The keeper held both rows: it expired the first and kept the second, whose lease it saw alive.
    assert statuses == {first.id: "EXPIRED", second.id: "WAITING"}
    assert RegistrationEvent.objects.filter(registration=first, reason="lease_expired").count() == 1
