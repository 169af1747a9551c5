"""The Celery app survives a broker connection that breaks while messages are prefetched."""

from types import SimpleNamespace

from kombu.transport import redis as kombu_redis

import hearo.celery


def qos_of(transport_client) -> kombu_redis.QoS:
    qos = kombu_redis.QoS.__new__(kombu_redis.QoS)
    qos.channel = SimpleNamespace(connection=SimpleNamespace(client=transport_client))
    qos._delivered = {"tag-1": object(), "tag-2": object()}
    return qos


def test_restoring_prefetched_messages_after_the_connection_is_gone_does_not_raise(caplog):
    qos = qos_of(None)  # what kombu 5.7 leaves behind when the primary dies
    assert kombu_redis.QoS.restore_unacked(qos) is None
    assert "2 prefetched message(s) left to redelivery" in caplog.text


def test_with_a_live_connection_the_messages_are_restored_as_kombu_does(monkeypatch):
    restored = []
    monkeypatch.setattr(hearo.celery, "_restore_unacked", lambda self, client=None: restored.append(self))
    qos = qos_of(object())
    kombu_redis.QoS.restore_unacked(qos)
    assert restored == [qos]


def test_the_worker_takes_one_task_at_a_time():
    assert hearo.celery.app.conf.worker_prefetch_multiplier == 1


def test_a_matcher_pass_that_finds_redis_unreachable_is_dropped_with_a_warning(monkeypatch, caplog):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from matching import matcher, tasks

    def unreachable():
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(matcher, "match_pass", unreachable)
    tasks.match_pass_task()  # raises nothing: Celery would log the task as failed with a traceback
    assert "matcher pass dropped, Redis unreachable" in caplog.text
