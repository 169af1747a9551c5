"""Run the HearO benchmark suite (issue #7) and write bench/results.json and bench/RESULTS.md.

    .venv/bin/python -m bench.run            # the whole suite, about 15 minutes
    .venv/bin/python -m bench.run --quick    # a smoke run, about 2 minutes
    .venv/bin/python -m bench.run --phases hub --out /tmp   # one phase, results kept out of bench/

Everything it starts (a private redis-server, the hearo_bench PostgreSQL
database, Daphne nodes, Celery) is its own and is stopped at the end.
"""

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench import cluster, machine
from bench.context import PHASES, Context, server_env

BENCH = Path(__file__).resolve().parent
# The Redis failover phase (issue #16) runs last: it brings its own primary, replica and sentinels.
SUITE_PHASES = (*PHASES, "failover")
log = logging.getLogger("bench")


def raise_file_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (5,000 clients + their servers need sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def django_setup(env: dict) -> None:
    os.environ.update(env)
    import django

    django.setup()
    log.setLevel(logging.INFO)  # the servers' LOG_LEVEL=WARNING must not hide the harness's progress


async def suite_run(ctx: Context, quick: bool, phases: tuple[str, ...]) -> dict:
    from bench.suite import FULL, QUICK, Suite

    return await Suite(ctx, QUICK if quick else FULL, phases).run()


def run(args) -> dict:
    logdir = Path(tempfile.mkdtemp(prefix="hearo-bench-"))
    meta = machine.describe(command=args.command, quick=args.quick, logdir=logdir)
    meta["open_files_limit"] = raise_file_limit()
    started = time.monotonic()
    with cluster.private_redis(logdir) as redis_url:
        cluster.database_recreate()
        try:
            env = server_env(redis_url, cluster.database_url())
            cluster.migrate(env)
            django_setup(env)
            ctx = Context(env=env, redis_url=redis_url, logdir=logdir, quick=args.quick)
            results = asyncio.run(suite_run(ctx, args.quick, tuple(args.phases)))
        finally:
            cluster.database_drop()
    meta["duration_s"] = round(time.monotonic() - started)
    meta["load_average_end"] = os.getloadavg()
    return {"meta": meta, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small N and short runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=BENCH, help="where results.json and RESULTS.md go")
    parser.add_argument("--command", default=" ".join(["python -m bench.run", *sys.argv[1:]]))
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=SUITE_PHASES,
        default=list(SUITE_PHASES),
        help="run only these phases (for iterating)",
    )
    parser.add_argument("--render", type=Path, help="only re-render RESULTS.md from this results JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    suffix = "-quick" if args.quick else ""
    if args.render:
        data = json.loads(args.render.read_text())
    else:
        data = run(args)
        (args.out / f"results{suffix}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    from bench.report import render

    (args.out / f"RESULTS{suffix}.md").write_text(render(data))
    log.info("wrote %s", args.out / f"RESULTS{suffix}.md")


if __name__ == "__main__":
    main()
