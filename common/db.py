"""Database helpers every app's writers share."""

from django.db import connection
from django.db.models import QuerySet


def claim(queryset: QuerySet) -> QuerySet:
    """Lock the rows a pass is about to change, skipping rows another writer holds.

    On PostgreSQL two concurrent matchers each take the rows the other has
    not locked, so neither waits and no row is handed out twice. SQLite has
    no row locks; its IMMEDIATE transactions already run writers one at a time.
    """
    if not connection.features.has_select_for_update_skip_locked:
        return queryset
    return queryset.select_for_update(skip_locked=True, of=("self",))


def update_in_id_order(queryset: QuerySet, **fields) -> int:
    """Update many rows, locking them in id order first; return how many changed.

    A bare ``UPDATE … WHERE`` locks rows in whatever order it scans them, so two
    passes refreshing overlapping sets (two workers after a Redis failover both
    renewing every lease copy) can each hold a row the other waits for: found by
    the soak as a PostgreSQL deadlock. Locked in one order, the second waits instead.
    """
    ids = list(queryset.order_by("pk").select_for_update(of=("self",)).values_list("pk", flat=True))
    if not ids:
        return 0
    return queryset.model.objects.filter(pk__in=ids).update(**fields)
