"""A queue change costs one Redis command and one read per node, whatever the queue length.

With several queues and languages it is still one broadcast, naming the queues
that changed, and each hub re-reads only those queues.
"""

import asyncio
import json

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


# --- several queues and languages ----------------------------------------------------

QUEUES = ("general", "youth", "crisis")
LANGUAGES = ("ko", "en")


def queues_make() -> None:
    """Create the three test queues (the default one may already exist), each serving both languages."""
    general()
    for queue_id in QUEUES[1:]:
        Queue.objects.get_or_create(
            queue_id=queue_id, defaults={"name_ko": queue_id, "name_en": queue_id, "languages": list(LANGUAGES)}
        )


def fill_lines(per_line: int, queues: tuple[str, ...] = QUEUES) -> dict[tuple[str, str], list[Registration]]:
    """Put ``per_line`` customers in every (queue, language) line with one bulk insert; return each line in order."""
    queues_make()
    now = timezone.now()
    start = Registration.objects.count()
    lines = [(q, lang) for q in queues for lang in LANGUAGES]
    customers = Customer.objects.bulk_create([Customer() for _ in range(per_line * len(lines))])
    rows = [
        Registration(
            customer=c,
            queue_id=lines[i % len(lines)][0],
            language=lines[i % len(lines)][1],
            enqueued_at=now,
            virtual_arrival=now,
            queue_since=now,
            token_hash=f"{start + i:064x}",
            lease_expires_at=now,
        )
        for i, c in enumerate(customers)
    ]
    made = Registration.objects.bulk_create(rows)
    by_line: dict[tuple[str, str], list[Registration]] = {}
    for registration in sorted(made, key=lambda r: r.id):  # same virtual arrival: id decides
        by_line.setdefault((registration.queue_id, registration.language), []).append(registration)
    return by_line


def broadcasts(commands: list[list[str]], channel: str) -> list[dict]:
    """Return the bodies of the queue broadcasts among MONITOR's commands."""
    # redis-py unquotes MONITOR's lines; the split payload is joined back.
    return [json.loads(" ".join(c[2:])) for c in commands if c[:2] == ["PUBLISH", channel]]


def commands_for_a_cancel(per_line: int, queues: tuple[str, ...], prefixes: tuple[str, ...]) -> list[list[str]]:
    """Cancel the head of youth's Korean line (through the service) while MONITOR watches."""
    lines = fill_lines(per_line, queues)
    leaver = lines[("youth", "ko")][0]
    return redis_commands_during(lambda: services.registration_cancel(registration=leaver), prefixes)


@pytest.mark.django_db(transaction=True)
def test_a_cancel_is_one_broadcast_naming_its_queue_whatever_the_queues_languages_and_customers(redis_url, settings):
    prefixes = (settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"], settings.CACHES["default"]["KEY_PREFIX"] + ":")
    one_line = commands_for_a_cancel(5, ("youth",), prefixes)
    Registration.objects.all().delete()
    six_lines = commands_for_a_cancel(300, QUEUES, prefixes)  # 3 queues x 2 languages x 300 = 1,800 waiting
    channel = settings.HEARO_QUEUE_BROADCAST
    for commands in (one_line, six_lines):
        (broadcast,) = broadcasts(commands, channel)
        assert (broadcast["queues"], broadcast["reason"]) == (["youth"], "cancelled")
    # Besides the broadcast only the leaver's own business (its terminal message, its lease and
    # token keys): the same commands with one line of 5 as with six lines of 300.
    assert sorted(c[0] for c in one_line) == sorted(c[0] for c in six_lines)


def commands_for_a_burst_across_lines(per_line: int, prefixes: tuple[str, ...]) -> list[list[str]]:
    """Match the heads of three lines in two queues in one transaction, as one matcher pass does."""
    from django.db import transaction

    lines = fill_lines(per_line)
    heads = [lines[line][0].id for line in (("youth", "ko"), ("youth", "en"), ("crisis", "en"))]

    def burst() -> None:
        with transaction.atomic():
            Registration.objects.filter(id__in=heads).update(status=Registration.Status.MATCHED)
            services.queue_changed(reason="matched", queue_ids=["crisis", "youth"])

    return redis_commands_during(burst, prefixes)


@pytest.mark.django_db(transaction=True)
def test_a_pass_across_queues_is_one_broadcast_and_nothing_else_whatever_the_customers(redis_url, settings):
    prefixes = (settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"], settings.CACHES["default"]["KEY_PREFIX"] + ":")
    small = commands_for_a_burst_across_lines(5, prefixes)
    Registration.objects.all().delete()
    large = commands_for_a_burst_across_lines(300, prefixes)
    publish = ["PUBLISH", settings.HEARO_QUEUE_BROADCAST]
    # No per-queue, per-line or per-customer command: one PUBLISH naming both queues.
    assert [c[:2] for c in small] == [c[:2] for c in large] == [publish]
    assert [b["queues"] for b in broadcasts(large, settings.HEARO_QUEUE_BROADCAST)] == [["crisis", "youth"]]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_hub_rereads_only_the_queue_that_changed_and_pushes_only_its_customers(
    published, monkeypatch, django_capture_on_commit_callbacks
):
    from channels.db import database_sync_to_async

    import realtime.hub as hub_module

    lines = await database_sync_to_async(fill_lines)(20)  # 3 queues x 2 languages x 20
    hub = RankHub()  # not started: its refresh loop is run below, fed the real broadcast
    pushed: dict[int, list[dict]] = {}
    for registration in (r for line in lines.values() for r in line):

        async def push(body, reg_id=registration.id):
            pushed.setdefault(reg_id, []).append(body)

        hub.watch_rank(Watcher(push=push, registration_id=registration.id, customer_id=f"c{registration.id}"))
    assert await hub.refresh() == 120  # first read, of every queue: everyone learns a rank
    pushed.clear()

    reads: list[frozenset[str] | None] = []

    def recording_read(queue_ids=None, fresh_board=False):
        reads.append(queue_ids)
        return _read(queue_ids, fresh_board)

    monkeypatch.setattr(hub_module, "_read", recording_read)
    leaver = lines[("youth", "en")][4]

    def cancel() -> dict:
        published.clear()
        with django_capture_on_commit_callbacks(execute=True):
            services.registration_cancel(registration=leaver)
        (message,) = [m for group, m in published if group == events.QUEUE_GROUP]
        return message

    message = await database_sync_to_async(cancel)()
    loop = asyncio.create_task(hub._refresh_loop())
    try:
        hub._changed(message)  # what the Redis subscription (or the in-memory layer) hands the hub
        async with asyncio.timeout(10):
            while hub.refreshes < 2:
                await asyncio.sleep(0.01)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    assert reads == [frozenset({"youth"})]  # the one queue the broadcast named, not the others
    behind = {r.id: rank for rank, r in enumerate(lines[("youth", "en")][5:], start=5)}
    assert {reg_id: [b["rank"] for b in bodies] for reg_id, bodies in pushed.items()} == {
        reg_id: [rank] for reg_id, rank in behind.items()
    }
    assert all(b["queueId"] == "youth" for bodies in pushed.values() for b in bodies)
