"""Ask for a matcher pass now, instead of waiting for the periodic one.

Where the pass runs depends on the deployment: in the web process itself
(the embedded default, ``HEARO_INPROCESS_MATCHER``) or on a Celery worker.
Callers never care which; they call ``request_match_pass`` after commit.
The services that free a seat sit below the matcher, so they cannot import
it: ``MatchingConfig.ready`` registers the runner here instead.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from kombu.exceptions import OperationalError as BrokerUnreachable
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# Queue changes the pass makes itself: reacting to them would only run an
# empty pass (a pass already pairs everyone it requeued).
PASS_REASONS = frozenset({"matched", "requeued", "expired", "overflow"})

_runner: Callable[[float], None] | None = None


def match_pass_runner_set(runner: Callable[[float], None]) -> None:
    """Register what starts a pass soon (called once, from ``MatchingConfig.ready``)."""
    global _runner
    _runner = runner


def request_match_pass(*, after: float = 0) -> None:
    """Run a matcher pass soon (``after`` seconds from now); never raises (the periodic pass is the safety net)."""
    if not settings.HEARO_MATCH_ON_EVENTS or _runner is None:
        return
    try:
        _runner(after)
    except (BrokerUnreachable, RedisConnectionError, RedisTimeoutError) as exc:
        # Redis restarting or failing over: expected, and the beat's pass covers it. One line, no traceback.
        log.warning("could not request a matcher pass (%s); the periodic pass will run it", type(exc).__name__)
    except Exception:
        log.exception("could not request a matcher pass; the periodic pass will run it")


def on_queue_changed(sender, *, reason: str = "", **kwargs) -> None:
    """React to ``queues.signals.queue_changed`` (sent after commit)."""
    if reason not in PASS_REASONS:
        request_match_pass()
