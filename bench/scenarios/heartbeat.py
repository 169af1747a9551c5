"""Scenario 3: heartbeat load, open loop, while rank fan-out runs.

The generator is its own process (``bench.loadgen``) so the 5,000 STOMP
clients of the harness do not slow it down; fan-out changes keep running in
the harness for as long as it does.
"""

import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from bench.cluster import ROOT
from bench.cpu import pids_by_cmdline, sched_delta, sched_ms
from bench.scenarios.fanout import changes_run, changes_summary

CHANGE_PAUSE = 1.0


async def loadgen(
    ctx,
    ports: list[int],
    seats: list,
    *,
    rate: float,
    duration: float,
    method: str = "POST",
    path: str = "/api/queue/heartbeat",
    connections: int = 64,
    drain: float = 10.0,
    watch: dict[str, int] | None = None,
) -> dict:
    """Run the open-loop generator process once; return its JSON report.

    ``watch`` (label -> pid): processes whose CPU time and run-queue wait it records second by second.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", dir=ctx.logdir, delete=False) as f:
        f.write("\n".join(seat.token for seat in seats))
    args = [
        "--port",
        ",".join(map(str, ports)),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--method",
        method,
        "--path",
        path,
        "--connections",
        str(connections),
        "--drain",
        str(drain),
        "--tokens",
        f.name,
        "--watch",
        json.dumps(watch or {}),
    ]
    # Its own session, so its own scheduling group (autogroup): not a share of the harness's, whose
    # thousands of clients are busy exactly when a fan-out runs.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    out, _ = await proc.communicate()
    Path(f.name).unlink()
    return json.loads(out)


async def _changes_until(done: asyncio.Event, room, http, bound: float) -> list[dict]:
    """Keep making fan-out changes (one a second) until the load run ends."""
    out, rng = [], random.Random(11)
    while not done.is_set() and len(room.order) > 10:
        plan = {"changes": 1, "burst_size": 5, "bound": bound}
        out += await changes_run(room, http, plan, rng)
        try:
            await asyncio.wait_for(done.wait(), CHANGE_PAUSE)
        except TimeoutError:
            pass
    return out


async def under_fanout(
    ctx, ports, room, http, seats, rate: float, duration: float, watch: dict[str, int] | None = None
) -> dict:
    """Heartbeats at ``rate`` for ``duration`` s against ``ports``, fan-out changes running meanwhile.

    ``watch`` names processes (label -> pid) whose CPU and run-queue wait are recorded over the run
    and, with the harness's and Redis's, second by second (the generator's ``sched_by_second``).
    """
    done = asyncio.Event()
    before = {label: sched_ms(pid) for label, pid in (watch or {}).items()}
    seconds = {**(watch or {}), "harness": os.getpid()}
    redis = pids_by_cmdline("redis-server", f":{ctx.redis_port}")
    if redis:
        seconds["Redis"] = redis[0]
    changer = asyncio.create_task(_changes_until(done, room, http, bound=10))
    try:
        load = await loadgen(ctx, ports, seats, rate=rate, duration=duration, watch=seconds)
    finally:
        done.set()
    changes = await changer
    out = {"rate": rate, "nodes": len(ports), "load": load, "fanout_during": changes_summary(changes)["all"]}
    if watch:
        out["sched"] = {label: sched_delta(before[label], sched_ms(pid)) for label, pid in watch.items()}
    return out


async def heartbeat_runs(ctx, ports, room, http, seats, rates: list[float], duration: float) -> list[dict]:
    out = []
    for rate in rates:
        out.append(await under_fanout(ctx, ports, room, http, seats, rate, duration))
        await asyncio.sleep(1.0)
    return out
