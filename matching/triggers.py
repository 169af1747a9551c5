"""Ask for a matcher pass now, instead of waiting for the periodic one.

Where the pass runs depends on the deployment: in the web process itself
(the embedded default, ``HEARO_INPROCESS_MATCHER``) or on a Celery worker.
Callers never care which; they call ``request_match_pass`` after commit.
"""

import logging

from django.conf import settings

log = logging.getLogger(__name__)

# Queue changes the pass makes itself: reacting to them would only run an
# empty pass (a pass already pairs everyone it requeued).
PASS_REASONS = frozenset({"matched", "requeued", "expired"})


def request_match_pass() -> None:
    """Run a matcher pass soon; never raises (the periodic pass is the safety net)."""
    if not settings.HEARO_MATCH_ON_EVENTS:
        return
    # Imported here: both modules import the services that call this one.
    from matching import inprocess, tasks

    try:
        if settings.HEARO_INPROCESS_MATCHER:
            inprocess.request_now()
        else:
            # A triggered run still queued after one interval is stale: the
            # beat has run a pass since, so let the worker drop it.
            tasks.match_pass_task.apply_async(expires=settings.HEARO_MATCH_INTERVAL_SECONDS)
    except Exception:
        log.exception("could not request a matcher pass; the periodic pass will run it")


def on_queue_changed(sender, *, reason: str = "", **kwargs) -> None:
    """React to ``queues.signals.queue_changed`` (sent after commit)."""
    if reason not in PASS_REASONS:
        request_match_pass()
