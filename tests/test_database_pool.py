"""PostgreSQL connections come from a bounded pool per process, not a new connection per request."""

import pytest
from django.db import connection

from tests.test_settings import load_settings


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_requests_borrow_pooled_connections_instead_of_opening_one_each(postgres, client):
    seen = set()
    for _ in range(10):
        client.get("/healthz")  # a request: Django closes its connection at the end (back to the pool)
        seen.add(backend_pid())
        connection.close()
    assert len(seen) <= 2  # the pool's one or two connections, not ten new ones (HEARO_DB_POOL_MAX=0 opens ten)


def test_the_pool_is_bounded_and_can_be_turned_off():
    code = "import hearo.settings as s; d = s.DATABASES['default']; print(d.get('OPTIONS', {}).get('pool'))"
    postgres = {"DATABASE_URL": "postgres://u@127.0.0.1:5432/x"}
    assert "'max_size': 8" in load_settings(code, **postgres).stdout
    assert load_settings(code, HEARO_DB_POOL_MAX="0", **postgres).stdout.strip() == "None"
