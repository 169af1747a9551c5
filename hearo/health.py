"""Operations endpoints: liveness, readiness, Prometheus metrics."""

import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common import metrics, redis_clients
from matching.matcher import MATCHER_STAMP_KEY
from matching.models import Counselor
from queues.selectors import queue_order
from realtime.hub import hubs_running


def healthz(request):
    """The process is up."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    cache.set("health:probe", 1, timeout=10)
    if cache.get("health:probe") != 1:
        raise RuntimeError("cache did not return what was written")


def _check_channel_layer() -> None:
    layer = get_channel_layer()

    async def roundtrip() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.probe"})
        await layer.receive(channel)

    async_to_sync(roundtrip)()


def _check_matcher() -> None:
    """The periodic pass ran lately: the beat's, or the in-process loop's.

    Event-driven passes do not count: they keep matching while the beat is
    dead, and then nothing expires ghosts or undoes missed hand-offs when the
    queue is quiet.
    """
    stamp = cache.get(MATCHER_STAMP_KEY)
    limit = 3 * settings.HEARO_MATCH_INTERVAL_SECONDS
    if stamp is None or time.time() - stamp > limit:
        raise RuntimeError(f"no periodic matcher pass in the last {limit} s (is the beat running?)")


def _check_redis_primary() -> None:
    """With sentinels: this node's broadcast subscription is on the primary they name now.

    After a failover a node is not ready until it has followed: its hub
    re-subscribes on the promoted replica within a second or two of the
    sentinels naming it.
    """
    named = redis_clients.primary_named()
    if redis_clients.watch.lost_at is not None:
        lost = time.monotonic() - redis_clients.watch.lost_at
        raise RuntimeError(f"lost the Redis primary {lost:.1f} s ago; the sentinels name {_address(named)}")
    following = [hub.subscribed_to for hub in hubs_running()]
    behind = [address for address in following if address is None or tuple(address) != tuple(named)]
    if behind:
        now_on = _address(behind[0]) if behind[0] else "no server"
        raise RuntimeError(f"the rank hub is on {now_on}; the sentinels name {_address(named)} as the primary")


def _address(address) -> str:
    return f"{address[0]}:{address[1]}"


CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "channelLayer": _check_channel_layer,
    "matcher": _check_matcher,
}


def checks() -> dict:
    """Return the readiness checks this node runs (the primary's only behind sentinels)."""
    if redis_clients.sentinel_mode():
        return {**CHECKS, "redisPrimary": _check_redis_primary}
    return CHECKS


def readyz(request):
    """Database, Redis (cache and channel layer) and a recent matcher pass; 503 if any fails."""
    results = {}
    for name, check in checks().items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"failing: {exc}"
    ready = all(v == "ok" for v in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results}, status=200 if ready else 503
    )


def queue_gauges_refresh() -> None:
    """Set the queue's gauges from the database (on scrape)."""
    snapshot = queue_order()
    metrics.waiting.set(len(snapshot.ids))
    head = snapshot.head_enqueued_at
    metrics.longest_wait.set(time.time() - head.timestamp() if head else 0)
    by_status = dict.fromkeys(Counselor.Status.values, 0)
    for status in Counselor.objects.values_list("status", flat=True):
        by_status[status] += 1
    for status, count in by_status.items():
        metrics.counselors.labels(status=status).set(count)


def prometheus(request):
    queue_gauges_refresh()
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
