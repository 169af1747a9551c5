"""An open-loop HTTP load generator, run as its own process (``python -m bench.loadgen``).

Requests are scheduled at fixed intervals whatever the server does, and each
latency is measured from its *scheduled* time, so a slow server cannot hide
its queueing (no coordinated omission). A pool of keep-alive connections
takes scheduled requests from one queue; ``lag`` is how late a request left
the generator (queueing behind busy connections included).
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from bench.clients import HttpConn
from bench.cpu import PerSecond
from bench.stats import summary_ms


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []  # scheduled -> a connection took it (includes waiting for one)
        self.enqueue_lags: list[float] = []  # scheduled -> the scheduler queued it (generator health)
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.last_done = 0.0
        self.by_second: dict[int, list[float]] = {}  # whole seconds since the start -> latencies scheduled then


async def _worker(conn: HttpConn, queue: asyncio.Queue, args, tokens: list[str], rec: Recorder) -> None:
    while (item := await queue.get()) is not None:
        scheduled, i = item
        rec.lags.append(time.monotonic() - scheduled)
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        try:
            status, _ = await conn.request(args.method, args.path, headers)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            rec.errors += 1
            conn.close()
            conn.writer = None
            continue
        rec.last_done = time.monotonic()
        rec.latencies.append(rec.last_done - scheduled)
        rec.by_second.setdefault(int(scheduled - args.start), []).append(rec.last_done - scheduled)
        rec.statuses[str(status)] = rec.statuses.get(str(status), 0) + 1


async def _schedule(queue: asyncio.Queue, rate: float, duration: float, start: float, rec: Recorder) -> int:
    total = int(rate * duration)
    i = 0
    while i < total:
        now = time.monotonic()
        while i < total and start + i / rate <= now:
            queue.put_nowait((start + i / rate, i))
            rec.enqueue_lags.append(now - (start + i / rate))
            i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
    return total


async def run(args) -> dict:
    tokens = Path(args.tokens).read_text().split()
    ports = [int(p) for p in args.port.split(",")]
    conns = [await HttpConn(ports[i % len(ports)]).open() for i in range(args.connections)]
    queue: asyncio.Queue = asyncio.Queue()
    rec = Recorder()
    workers = [asyncio.create_task(_worker(c, queue, args, tokens, rec)) for c in conns]
    start = args.start = time.monotonic() + 0.2
    # Who waited for a CPU in each second, this generator included: a slow second is set against it.
    seconds = PerSecond({**json.loads(args.watch), "load generator": os.getpid()}, start)
    sampler = asyncio.create_task(seconds.run(int(args.duration)))
    total = await _schedule(queue, args.rate, args.duration, start, rec)
    await sampler
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=args.drain)
    for task in pending:
        task.cancel()
    done = len(rec.latencies)
    elapsed = max(rec.last_done - start, 1e-9)
    return {
        "target_rate": args.rate,
        "duration_s": args.duration,
        "scheduled": total,
        "completed": done,
        "unfinished": total - done - rec.errors,
        "errors": rec.errors,
        "statuses": rec.statuses,
        "achieved_rate": round(done / elapsed, 1),
        "latency_ms": summary_ms(rec.latencies),
        "dispatch_lag_ms": summary_ms(rec.lags),
        "scheduler_lag_ms": summary_ms(rec.enqueue_lags),
        # Where in the run the tail fell: a start-up stall and a steady tail read differently.
        "p99_ms_by_second": [summary_ms(rec.by_second[s])["p99"] for s in sorted(rec.by_second)],
        "sched_by_second": seconds.result(),
        "connections": args.connections,
        "ports": len(ports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", required=True, help="one port, or several comma-separated (connections alternate)")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", default="/api/queue/heartbeat")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--tokens", required=True, help="a file of bearer tokens, one per line")
    parser.add_argument("--watch", default="{}", help='processes to sample each second, as JSON {"label": pid}')
    json.dump(asyncio.run(run(parser.parse_args())), sys.stdout)


if __name__ == "__main__":
    main()
