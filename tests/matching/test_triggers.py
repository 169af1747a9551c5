"""Event triggers, the in-process matcher loop, the Celery task and its beat entry."""

import asyncio
import threading

import pytest
from django.conf import settings as django_settings
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from matching import counselors, inprocess, matcher, tasks, triggers
from matching.models import Counselor, Match

C = Counselor.Status


@pytest.fixture
def fresh_matcher(monkeypatch):
    monkeypatch.setattr(inprocess, "_matcher", inprocess._Matcher())
    return inprocess._matcher


@pytest.mark.django_db
def test_a_join_requests_a_pass_once_it_commits(requested, join):
    join("Mina")
    assert requested == ["pass"]


@pytest.mark.django_db
def test_the_passes_own_queue_changes_request_nothing(requested, on_shift, waiting):
    on_shift()
    waiting(1)
    requested.clear()
    triggers.on_queue_changed(sender=None, reason="matched")
    triggers.on_queue_changed(sender=None, reason="requeued")
    assert requested == []
    triggers.on_queue_changed(sender=None, reason="cancelled")
    assert requested == ["pass"]


@pytest.mark.django_db
def test_a_counselor_going_available_requests_a_pass_and_going_away_does_not(
    requested, on_shift, django_capture_on_commit_callbacks
):
    counselor = on_shift(C.OFFLINE)
    with django_capture_on_commit_callbacks(execute=True):
        counselors.counselor_set_status(counselor=counselor, status=C.AWAY)
    assert requested == []
    with django_capture_on_commit_callbacks(execute=True):
        counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)
    assert requested == ["pass"]


def test_requests_go_to_the_in_process_matcher_or_to_celery(settings, monkeypatch):
    woken, queued = [], []
    monkeypatch.setattr(inprocess, "request_now", lambda: woken.append(1))
    monkeypatch.setattr(tasks.match_pass_task, "apply_async", lambda **kw: queued.append(kw))
    settings.HEARO_MATCH_ON_EVENTS = True
    settings.HEARO_INPROCESS_MATCHER = True
    triggers.request_match_pass()
    settings.HEARO_INPROCESS_MATCHER = False
    triggers.request_match_pass()
    assert woken == [1]
    assert queued == [{"expires": settings.HEARO_MATCH_INTERVAL_SECONDS}]
    settings.HEARO_MATCH_ON_EVENTS = False
    triggers.request_match_pass()
    assert (len(woken), len(queued)) == (1, 1)


@pytest.mark.parametrize(
    ("error", "level"),
    [
        # Redis restarting or failing over: expected, the beat's pass covers it. One line, no traceback.
        (KombuOperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."), "WARNING"),
        (RedisConnectionError("Connection refused"), "WARNING"),
        (RedisTimeoutError("Timeout reading from socket"), "WARNING"),
        # Anything else is a bug: an ERROR with its traceback.
        (ConnectionError("not from the broker's client"), "ERROR"),
    ],
)
def test_a_request_the_broker_refuses_does_not_fail_the_caller(settings, monkeypatch, caplog, error, level):
    def refused(**kwargs):
        raise error

    monkeypatch.setattr(tasks.match_pass_task, "apply_async", refused)
    settings.HEARO_MATCH_ON_EVENTS, settings.HEARO_INPROCESS_MATCHER = True, False
    triggers.request_match_pass()  # nothing raised
    (record,) = caplog.records
    # The traceback, as the redacting filter leaves it: rendered into exc_text (exc_info is cleared).
    assert record.levelname == level and bool(record.exc_text) == (level == "ERROR")
    assert "the periodic pass will run it" in record.getMessage()


def test_a_request_before_the_loop_started_is_dropped(fresh_matcher):
    inprocess.request_now()  # no loop in this process: nothing to wake, nothing raised
    assert fresh_matcher.loop is None


def test_ensure_started_needs_a_running_loop(fresh_matcher):
    with pytest.raises(RuntimeError):
        inprocess.ensure_started()


@pytest.mark.django_db  # database_sync_to_async looks at the pass thread's connection
def test_the_in_process_matcher_runs_at_once_and_collapses_bursts(fresh_matcher, monkeypatch):
    passes = []
    release = threading.Event()

    def slow_pass():
        passes.append(1)
        release.wait(5)  # a pass in progress while the burst arrives

    monkeypatch.setattr(matcher, "match_pass", slow_pass)

    async def scenario():
        inprocess.ensure_started()
        inprocess.ensure_started()  # idempotent: still one task
        task = fresh_matcher.task
        while not passes:  # the first pass runs at once, not after an interval
            await asyncio.sleep(0.01)
        burst = [threading.Thread(target=inprocess.request_now) for _ in range(20)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        await asyncio.sleep(0.05)
        release.set()
        while fresh_matcher.passes < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        task.cancel()
        return task is fresh_matcher.task

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) is True
    assert len(passes) == 2  # the first pass, then ONE more for the whole burst


def test_the_task_has_a_stable_name_and_a_beat_entry_that_expires_before_the_next():
    from hearo.celery import app

    assert tasks.match_pass_task.name == "matching.match_pass"
    app.loader.import_default_modules()
    assert "matching.match_pass" in app.tasks
    entry = django_settings.CELERY_BEAT_SCHEDULE["matching.match_pass"]
    assert entry["task"] == "matching.match_pass"
    assert entry["schedule"] == django_settings.HEARO_MATCH_INTERVAL_SECONDS
    assert 0 < entry["options"]["expires"] < entry["schedule"]
    assert app.conf.beat_schedule == django_settings.CELERY_BEAT_SCHEDULE


@pytest.mark.django_db
def test_the_task_runs_a_pass(on_shift, waiting):
    on_shift()
    waiting(1)
    tasks.match_pass_task.apply()  # in this process, as a worker would
    assert Match.objects.count() == 1
