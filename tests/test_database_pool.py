"""PostgreSQL connections come from a bounded pool per process, not a new connection per request.

Every connection a thread takes from the pool must go back: one that does not
stays checked out for the process's life, and a few of them run the pool dry
("couldn't get a connection after 10.00 sec").
"""

import asyncio
import contextlib

import pytest
from channels.testing import HttpCommunicator
from django.db import connection

from common.db import KeptConnection
from hearo.asgi import application
from tests.test_settings import load_settings


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def lent() -> int:
    """Return how many of this process's pooled connections are checked out now."""
    stats = connection.pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


@pytest.mark.django_db(transaction=True)
def test_requests_borrow_pooled_connections_instead_of_opening_one_each(postgres, client):
    opened = connection.pool.get_stats()["connections_num"]
    for _ in range(10):
        client.get("/healthz")  # a request: Django closes its connection at the end (back to the pool)
        backend_pid()
        connection.close()
    # At most one new session for the ten (the pool may have none idle yet), not ten.
    # (Counted, not told apart by pid: the pool lends its idle sessions in turn.)
    assert connection.pool.get_stats()["connections_num"] - opened <= 1


def test_the_pool_is_bounded_and_can_be_turned_off():
    code = "import hearo.settings as s; d = s.DATABASES['default']; print(d.get('OPTIONS', {}).get('pool'))"
    postgres = {"DATABASE_URL": "postgres://u@127.0.0.1:5432/x"}
    assert "'max_size': 8" in load_settings(code, **postgres).stdout
    assert load_settings(code, HEARO_DB_POOL_MAX="0", **postgres).stdout.strip() == "None"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_request_the_server_kills_before_its_end_still_gives_its_connection_back(postgres):
    before = lent()
    headers = [(b"host", b"testserver"), (b"authorization", b"Bearer not-a-token")]
    request = HttpCommunicator(application, "GET", "/api/queue/rank", headers=headers)
    response = await request.get_response(5)
    assert response["status"] == 401  # the view looked the token up: its thread borrowed a connection
    # Cancelled before Django's request_finished, as Daphne kills a request still
    # running 10 s after its client left (and a dropped test communicator does).
    request.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await request.future
    assert lent() == before


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_kept_session_stays_open_between_reads_and_takes_nothing_from_the_pool(postgres):
    before = lent()
    kept = KeptConnection("kept-test")
    try:
        first, pool = await kept.run(lambda: (backend_pid(), connection.pool))
        assert pool is None and lent() == before  # the hub's session is its own, not a slot the requests lose
        assert await kept.run(backend_pid) == first  # and the same session every read
    finally:
        await kept.close()
