"""Long-lived loops stop when cancelled, even when the cancel lands as their wait ends.

On Python 3.11 ``asyncio.wait_for`` returns the inner result and drops the
cancel if the awaited event fired just before it: a loop around it then never
stops (a hub that outlives its node, a test that hangs in teardown). Each case
here sets the event, lets exactly that happen, and cancels in the same tick.
"""

import asyncio

import pytest

from matching import inprocess, matcher
from realtime.hub import RankHub
from realtime.sockjs.session import Session

pytestmark = pytest.mark.asyncio

BOUND_SECONDS = 5


async def fire_then_cancel(event: asyncio.Event, task: asyncio.Task) -> None:
    event.set()
    await asyncio.sleep(0)  # the waiter finishes; its caller has not run yet
    task.cancel()


@pytest.mark.django_db(transaction=True)
async def test_a_hub_stops_when_stopped_as_a_change_arrives():
    for _ in range(5):
        hub = RankHub()
        await hub.start()
        await asyncio.sleep(0.05)  # every loop is parked in its wait
        hub._changed()
        await asyncio.sleep(0)
        await asyncio.wait_for(hub.stop(), BOUND_SECONDS)
        assert all(task.cancelled() for task in hub._tasks)


async def test_a_sockjs_writer_stops_when_cancelled_as_data_arrives():
    session = Session("s", handler=None, scope={}, disconnect_delay=1)

    async def writer():  # as a streaming response does: wait, write, wait again
        while True:
            await session.wait(30)
            session.wakeup.clear()

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0)
    await fire_then_cancel(session.wakeup, writing)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(writing, BOUND_SECONDS)


@pytest.mark.django_db(transaction=True)
async def test_the_in_process_matcher_stops_when_cancelled_as_it_is_woken(monkeypatch):
    state = inprocess._Matcher()
    state.loop, state.wake = asyncio.get_running_loop(), asyncio.Event()
    state.wake.set()  # as ensure_started does: a first pass at once
    monkeypatch.setattr(inprocess, "_matcher", state)
    passes = []
    monkeypatch.setattr(matcher, "match_pass_periodic", lambda: passes.append(1))
    loop = asyncio.create_task(inprocess.run_forever(interval=30))
    while not passes:  # the first pass runs at once; then it waits to be woken
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await fire_then_cancel(state.wake, loop)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loop, BOUND_SECONDS)
