"""Celery tasks of the matcher: stable names, plain arguments (STYLE habit 11)."""

import logging

from celery import shared_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from matching import matcher

log = logging.getLogger(__name__)


@shared_task(name="matching.match_pass", ignore_result=True)
def match_pass_task(scheduled: bool = False) -> None:
    """Run one matcher pass: the beat's (``scheduled=True``), or one an event triggered.

    Only the beat's stamps readiness, so /readyz notices a dead beat even
    while event-driven passes keep matching. A pass that finds Redis
    unreachable (a failover, a restart) is dropped, not retried: its database
    work rolled back whole, a retry would need the same broker, and the beat's
    next pass (every HEARO_MATCH_INTERVAL_SECONDS) does the same work.
    """
    try:
        if scheduled:
            matcher.match_pass_periodic()
        else:
            matcher.match_pass()
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("matcher pass dropped, Redis unreachable (%s); the next pass repeats it", exc)
