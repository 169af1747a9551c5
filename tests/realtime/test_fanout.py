"""A queue change costs one Redis command and one read per node, whatever the queue length."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common import events
from matching.selectors import wait_stats_forget
from queues import services
from queues.models import Customer, Queue, Registration
from realtime.hub import RankHub, Watcher, _read

pytestmark = pytest.mark.django_db


def general() -> Queue:
    return services.queue_default()  # a flushed (transactional) database lost the migrated row


def fill_queue(n: int) -> list[Registration]:
    """Put n customers in the queue with one bulk insert."""
    now = timezone.now()
    queue = general()
    start = Registration.objects.count()
    customers = Customer.objects.bulk_create([Customer() for _ in range(n)])
    return Registration.objects.bulk_create(
        [
            Registration(
                customer=c,
                queue=queue,
                language="ko",
                enqueued_at=now,
                virtual_arrival=now,
                queue_since=now,
                token_hash=f"{start + i:064x}",
                lease_expires_at=now,
            )
            for i, c in enumerate(customers)
        ]
    )


def publishes_for_a_cancel_at_the_head(n: int, published, capture) -> int:
    registrations = fill_queue(n)
    published.clear()
    with capture(execute=True):
        services.registration_cancel(registration=registrations[0])
    return len(published)


def test_channel_layer_publishes_per_queue_change_do_not_grow_with_the_queue(
    published, django_capture_on_commit_callbacks
):
    small = publishes_for_a_cancel_at_the_head(10, published, django_capture_on_commit_callbacks)
    Registration.objects.all().delete()
    large = publishes_for_a_cancel_at_the_head(1000, published, django_capture_on_commit_callbacks)
    assert small == large == 2  # the leaver's own message + one broadcast to the hubs
    assert published.groups().count(events.QUEUE_GROUP) == 1


def queries_for_a_hub_read(n: int) -> int:
    fill_queue(n)
    wait_stats_forget()  # measure the uncached worst case both times
    with CaptureQueriesContext(connection) as captured:
        snapshot, _ = _read()
    assert len(snapshot.ids) >= n
    return len(captured)


def test_a_hub_reads_the_whole_queue_in_a_constant_number_of_queries():
    small = queries_for_a_hub_read(10)
    Registration.objects.all().delete()
    large = queries_for_a_hub_read(2000)
    assert small == large
    # The ordered ids with their lines and version, each queue's count and
    # longest wait, and the briefly cached wait board (counselors serving each
    # line, recent calls, the queues' hours; one more with a call history).
    assert large <= 6


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_hub_pushes_each_customer_once_and_only_when_its_rank_changed():
    from channels.db import database_sync_to_async

    registrations = await database_sync_to_async(fill_queue)(300)
    hub = RankHub()  # not started: driven directly
    pushed: dict[int, list[dict]] = {}

    def watcher_for(registration: Registration) -> Watcher:
        async def push(body, reg_id=registration.id):
            pushed.setdefault(reg_id, []).append(body)

        return Watcher(push=push, registration_id=registration.id, customer_id=f"c{registration.id}")

    for registration in registrations:
        hub.watch_rank(watcher_for(registration))
    assert await hub.refresh() == 300  # first read: everyone learns a rank
    pushed.clear()

    # Remove the 3rd and the 10th (a matcher pass taking two, say): one read.
    def leave():
        for registration in (registrations[2], registrations[9]):
            Registration.objects.filter(pk=registration.pk).update(status="MATCHED")

    await database_sync_to_async(leave)()
    before = hub.refreshes
    pushes = await hub.refresh()
    assert hub.refreshes == before + 1
    moved = {r.id for r in registrations[3:]} - {registrations[9].id}
    assert pushes == len(moved) == 296  # everyone behind the 3rd; the leavers hear from their own topic
    assert set(pushed) == moved
    assert all(len(bodies) == 1 for bodies in pushed.values())
    assert pushed[registrations[3].id][0]["rank"] == 3
    assert pushed[registrations[10].id][0]["rank"] == 9
    assert await hub.refresh() == 0  # nothing changed: nothing pushed


def redis_commands_during(action, prefixes: tuple[str, ...]) -> list[list[str]]:
    """Run action under Redis MONITOR; return the commands that touched our prefixes."""
    import threading

    import redis
    from django.conf import settings

    stop = "fanout-test-monitor-stop"
    seen: list[list[str]] = []
    ready = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(settings.REDIS_URL).monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                if stop in entry["command"]:
                    return
                if any(p in entry["command"] for p in prefixes):
                    seen.append(entry["command"].split())

    watcher = threading.Thread(target=watch)
    watcher.start()
    ready.wait(5)
    action()
    redis.Redis.from_url(settings.REDIS_URL).echo(stop)
    watcher.join(10)
    return seen


def commands_for_a_matcher_burst(n: int, prefixes: tuple[str, ...]) -> list[list[str]]:
    """Take the head five out of a queue of n in one transaction, as a matcher pass does."""
    from django.db import transaction

    registrations = fill_queue(n)
    head = [r.id for r in registrations[:5]]

    def burst() -> None:
        with transaction.atomic():
            Registration.objects.filter(id__in=head).update(status=Registration.Status.MATCHED)
            services.queue_changed(reason="test burst")

    return redis_commands_during(burst, prefixes)


@pytest.mark.django_db(transaction=True)
def test_a_queue_change_is_one_redis_publish_whatever_the_queue_length(redis_url, settings):
    layer = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    prefixes = (layer, settings.CACHES["default"]["KEY_PREFIX"] + ":")
    small = commands_for_a_matcher_burst(10, prefixes)
    Registration.objects.all().delete()
    large = commands_for_a_matcher_burst(1000, prefixes)
    publish = ["PUBLISH", settings.HEARO_QUEUE_BROADCAST]
    # Nothing else: no group bookkeeping, no per-receiver channel, no per-customer message.
    assert [c[:2] for c in small] == [c[:2] for c in large] == [publish]
