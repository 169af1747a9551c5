"""A join or a settings change to a queue never deadlocks with the matcher's overflow into it (PostgreSQL).

Found by the soak: the overflow's UPDATE of ``registration.queue_id`` has its
foreign-key check deferred to COMMIT (Django's FKs are DEFERRABLE INITIALLY
DEFERRED), so its FOR KEY SHARE on the target queue row comes after the pass
locked the queue version row; a writer that locked the queue row FOR UPDATE
and then wanted the version row closed the circle.
"""

import threading

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from queues import services, staff
from queues.models import Customer, Queue, Registration

pytestmark = [pytest.mark.django_db(transaction=True)]


def waiting_in_youth() -> Registration:
    services.queue_default()
    Queue.objects.create(queue_id="youth", name_ko="청소년", name_en="Youth", languages=["ko"])
    now = timezone.now()
    customer = Customer.objects.create()
    return Registration.objects.create(
        customer=customer,
        queue_id="youth",
        language="ko",
        enqueued_at=now,
        virtual_arrival=now,
        queue_since=now,
        token_hash="x" * 64,
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
