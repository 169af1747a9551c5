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
