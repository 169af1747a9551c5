"""Shared database helpers: bulk updates lock in one order; a steady reader keeps one session."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from common.db import KeptConnection, update_in_id_order
from queues import services
from queues.models import Registration

pytestmark = pytest.mark.django_db


def test_a_bulk_update_locks_its_rows_in_id_order_then_changes_exactly_them():
    joined = [services.registration_join(display_name=n).registration.id for n in "abc"]
    Registration.objects.filter(pk=joined[1]).update(status="CANCELLED")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        changed = update_in_id_order(Registration.objects.filter(status="WAITING"), left_reason="x")
    assert changed == 2
    assert set(Registration.objects.filter(left_reason="x").values_list("id", flat=True)) == {joined[0], joined[2]}
    lock = next(q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"])
    assert lock.startswith('SELECT "queues_registration"."id" AS "pk"') and "ORDER BY 1 ASC" in lock
    if connection.features.has_select_for_update:
        assert "FOR UPDATE" in lock


def test_nothing_to_update_is_one_query_and_zero():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert update_in_id_order(Registration.objects.filter(status="WAITING"), left_reason="x") == 0
    assert len(queries.captured_queries) == 1


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def waiting_count() -> int:
    return Registration.objects.filter(status="WAITING").count()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_kept_reads_share_one_session_and_come_back_after_it_is_killed(postgres):
    kept = KeptConnection("test-kept")
    try:
        pids = {await kept.run(backend_pid) for _ in range(5)}
        assert len(pids) == 1  # one session for every read, not one each
        [pid] = pids
        await sync_to_async(services.registration_join)(display_name="a")
        assert await kept.run(waiting_count) == 1  # autocommit: a read sees what others committed

        def terminate():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

        await sync_to_async(terminate)()  # as a PostgreSQL restart would
        assert await kept.run(waiting_count) == 1  # tried again on a new session
        assert await kept.run(backend_pid) != pid
    finally:
        await kept.close()
    assert kept._executor._shutdown
