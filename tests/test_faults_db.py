"""PostgreSQL drops a session in the middle of a transaction: a JSON 503, no half-written state.

The session is ended the way an operator or a failover ends it:
``pg_terminate_backend`` from another connection, while the request (or
the matcher pass) is inside its transaction. The client gets a 503 it can
retry, never a 500 or a hang; PostgreSQL rolls the whole transaction back,
so there is no visit without its event and no match with one side updated;
and the next request, on a fresh session, succeeds.
"""

import threading
import time

import pytest
from django.db import DatabaseError, connection, connections
from rest_framework.test import APIClient

from hearo.celery import app
from matching import counselors, matcher
from matching.models import Counselor, CounselorEvent, Match
from matching.tasks import match_pass_task
from queues import services as queue_services
from queues.models import Customer, QueueState, Registration, RegistrationEvent
from tests.conftest import bearer
from tests.support.processes import celery_worker, daphne
from tests.test_cluster import wait_for
from tests.test_server import call

pytestmark = pytest.mark.django_db(transaction=True)
S = Registration.Status
C = Counselor.Status


def terminate(pid: int) -> None:
    """End a PostgreSQL backend from another session, and wait until it is gone."""
    admin = connections.create_connection("default")
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            assert cursor.fetchone()[0], f"backend {pid} did not end"
    finally:
        admin.close()


@pytest.fixture
def dies_before(monkeypatch, postgres):
    """Make ``module.name`` end this thread's database session the first time it runs, then run."""
    killed: list[int] = []

    def arm(module, name: str) -> list[int]:
        original = getattr(module, name)

        def dying(*args, **kwargs):
            if not killed:
                killed.append(connection.connection.info.backend_pid)
                terminate(killed[0])
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, dying)
        return killed

    return arm


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content
    assert response.json() == {"error": "unavailable", "detail": "a backing service is down; retry shortly"}
    assert response["Retry-After"] == "2"


def test_a_join_whose_session_dies_before_its_event_is_written_leaves_nothing(api, dies_before):
    killed = dies_before(queue_services, "registration_record")  # the visit's row is written by then
    assert_unavailable(api.post("/api/queue/join", {}, format="json"))
    assert killed
    assert (Customer.objects.count(), Registration.objects.count(), RegistrationEvent.objects.count()) == (0, 0, 0)
    again = api.post("/api/queue/join", {}, format="json")
    assert again.status_code == 201
    events = RegistrationEvent.objects.filter(registration_id=again.json()["registrationId"])
    assert list(events.values_list("to_status", "reason")) == [(S.WAITING, "joined")]


def test_a_cancel_whose_session_dies_mid_transaction_leaves_the_visit_waiting(api, dies_before):
    token = api.post("/api/queue/join", {}, format="json").json()["token"]
    killed = dies_before(queue_services, "registration_record")  # after the status UPDATE
    assert_unavailable(api.post("/api/queue/cancel", **bearer(token)))
    assert killed
    registration = Registration.objects.get()
    assert registration.status == S.WAITING and registration.ended_at is None
    assert registration.events.count() == 1
    assert api.get("/api/queue/rank", **bearer(token)).json()["rank"] == 1  # still in the queue
    again = api.post("/api/queue/cancel", **bearer(token))
    assert (again.status_code, again.json()) == (200, {"status": S.CANCELLED})
    assert list(registration.events.values_list("to_status", flat=True)) == [S.WAITING, S.CANCELLED]


def test_a_status_change_whose_session_dies_mid_transaction_keeps_the_old_status(dies_before):
    counselor = counselors.counselor_create(username="alice", password=None)
    client = APIClient()
    client.force_authenticate(counselor.user)
    killed = dies_before(counselors, "counselor_record")  # after the status UPDATE
    assert_unavailable(client.post("/api/counselor/status", {"status": C.AVAILABLE}, format="json"))
    assert killed
    counselor.refresh_from_db()
    assert counselor.status == C.OFFLINE and counselor.lease_expires_at is None
    assert CounselorEvent.objects.filter(counselor=counselor).count() == 1  # "created"
    again = client.post("/api/counselor/status", {"status": C.AVAILABLE}, format="json")
    assert (again.status_code, again.json()["status"]) == (200, C.AVAILABLE)


def test_a_pass_whose_session_dies_mid_match_leaves_no_half_made_match(dies_before):
    counselor = counselors.counselor_create(username="alice", password=None)
    counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)
    waiting = queue_services.registration_join().registration
    # Called once the visit is MATCHED and the counselor BUSY, before the match's history row.
    killed = dies_before(matcher, "match_record")
    with pytest.raises(DatabaseError):
        matcher.match_pass()
    assert killed
    assert_not_matched(waiting, counselor)
    result = matcher.match_pass()  # the next pass, on a fresh session
    assert len(result.matched) == 1
    assert_matched(waiting, counselor)


def assert_not_matched(registration: Registration, counselor: Counselor) -> None:
    assert not Match.objects.exists()
    assert Registration.objects.get(pk=registration.pk).status == S.WAITING
    assert Counselor.objects.get(pk=counselor.pk).status == C.AVAILABLE


def assert_matched(registration: Registration, counselor: Counselor) -> None:
    match = Match.objects.get()
    assert (match.registration_id, match.counselor_id, match.ended_at) == (registration.pk, counselor.pk, None)
    assert Registration.objects.get(pk=registration.pk).status == S.MATCHED
    assert Counselor.objects.get(pk=counselor.pk).status == C.BUSY
    assert list(match.events.values_list("what", flat=True)) == ["created"]


# --- real processes: the session of a Daphne node, and of a Celery worker -------------------------


class QueueRowHeld:
    """Hold the queue version row, which every queue change updates last before commit.

    A request or pass that reaches it waits there with the rest of its
    transaction written: the moment to end its session.
    """

    def __enter__(self):
        QueueState.objects.get_or_create(pk=1)
        self.blocker = connections.create_connection("default")
        self.cursor = self.blocker.cursor()
        self.cursor.execute("BEGIN")
        self.cursor.execute("SELECT version FROM queues_queuestate WHERE id = 1 FOR UPDATE")
        return self

    def waiting_backend(self, timeout: float = 15) -> int:
        """Return the pid of the session waiting for the row."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Not on the blocker: inside a transaction pg_stat_activity stays as first read.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                row = cursor.fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
        raise TimeoutError("nobody ever waited for the queue row")

    def __exit__(self, *exc):
        self.cursor.execute("ROLLBACK")
        self.cursor.close()
        self.blocker.close()


def test_a_node_whose_session_is_killed_mid_join_answers_503_and_serves_the_next(tmp_path, postgres):
    with daphne(tmp_path, HEARO_MATCH_ON_EVENTS="0") as (port, _):  # no passes queued for later tests
        answers: list = []
        with QueueRowHeld() as held:
            request = threading.Thread(target=lambda: answers.append(call(port, "POST", "/api/queue/join", body={})))
            request.start()
            terminate(held.waiting_backend())
            request.join(timeout=15)
        assert answers, "the join never answered"
        status, body = answers[0]
        assert (status, body["error"]) == (503, "unavailable")
        assert (Customer.objects.count(), Registration.objects.count(), RegistrationEvent.objects.count()) == (0, 0, 0)

        status, joined = call(port, "POST", "/api/queue/join", body={})
        assert status == 201, joined
        status, state = call(port, "GET", "/api/queue/rank", joined["token"])
        assert (status, state["status"], state["rank"]) == (200, S.WAITING, 1)
        assert Registration.objects.get().events.count() == 1


def test_a_worker_whose_session_is_killed_mid_pass_leaves_no_half_match_and_recovers(tmp_path, redis_url, postgres):
    counselor = counselors.counselor_create(username="alice", password=None)
    counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)
    waiting = queue_services.registration_join().registration
    app.control.purge()  # passes other tests' nodes queued would match before ours is held
    with celery_worker(tmp_path) as worker:
        with QueueRowHeld() as held:
            match_pass_task.delay()
            terminate(held.waiting_backend())
        wait_for(lambda: "raised unexpected" in worker.output(), what="the pass did not fail")
        assert_not_matched(waiting, counselor)
        match_pass_task.delay()  # the same worker's next pass, on a fresh session
        wait_for(Match.objects.exists, what="the next pass made no match")
    assert_matched(waiting, counselor)
