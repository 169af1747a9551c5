"""The matcher inside the web process: the embedded default, no Celery needed.

One asyncio task per process runs a pass every interval, and at once when
``request_now`` wakes it. Requests that arrive while a pass runs collapse
into one more pass, so a burst of joins costs two passes, not one per join.
"""

import asyncio
import contextlib
import contextvars
import logging
import threading

from channels.db import database_sync_to_async
from django.conf import settings

from matching import matcher

log = logging.getLogger(__name__)


class _Matcher:
    """The state of this process's loop: where it runs and how to wake it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.passes = 0  # read by tests
        self.lock = threading.Lock()


_matcher = _Matcher()


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    return _matcher.task is not None and not _matcher.task.done() and _matcher.loop is loop


def ensure_started() -> None:
    """Start the periodic matcher on the running event loop; idempotent and cheap.

    Call it from inside the server's event loop (an ASGI app's first
    request or connection); it raises RuntimeError outside one.
    """
    loop = asyncio.get_running_loop()
    if _running_on(loop):
        return  # every request after the first
    with _matcher.lock:
        if _running_on(loop):
            return
        _matcher.loop, _matcher.wake = loop, asyncio.Event()
        _matcher.wake.set()  # a first pass at once: catch up on deadlines missed while down
        # A fresh context: the task must not inherit the first request's, whose
        # thread-sensitive executor (asgiref) is shut down when that request ends.
        coroutine = run_forever(settings.HEARO_MATCH_INTERVAL_SECONDS)
        _matcher.task = loop.create_task(coroutine, name="hearo-matcher", context=contextvars.Context())


def request_now(*, after: float = 0) -> None:
    """Wake the matcher from any thread (``after`` seconds from now); a no-op until ``ensure_started`` ran."""
    loop, wake = _matcher.loop, _matcher.wake
    if loop is None or wake is None or loop.is_closed():
        log.debug("in-process matcher not started; request dropped")
        return
    # asyncio.Event is not thread-safe: set it from the loop's own thread.
    if after > 0:
        loop.call_soon_threadsafe(loop.call_later, after, wake.set)
    else:
        loop.call_soon_threadsafe(wake.set)


async def run_forever(interval: float) -> None:
    """Run a pass every ``interval`` seconds, or sooner when woken; never return."""
    if _matcher.wake is None or _matcher.loop is not asyncio.get_running_loop():
        _matcher.loop, _matcher.wake = asyncio.get_running_loop(), asyncio.Event()
    wake = _matcher.wake
    # This loop is the schedule: any pass it runs shows it alive, so each stamps readiness.
    run_pass = database_sync_to_async(matcher.match_pass_periodic)
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):  # not wait_for: it can swallow a cancel on 3.11
                await wake.wait()
        wake.clear()  # before the pass: a request during it wakes us again at once
        try:
            await run_pass()
        except Exception:
            log.exception("matcher pass failed; retrying in %ss", interval)
        _matcher.passes += 1
