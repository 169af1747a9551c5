"""Shared writers' helpers: a bulk update takes its row locks in one order (no deadlock between two passes)."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from common.db import update_in_id_order
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
