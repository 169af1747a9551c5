"""`make cluster`: the docker-compose topology as local processes on 127.0.0.1.

Two Daphne nodes for the sockets, one for the REST API, one Celery worker and
exactly one beat, against the local PostgreSQL and Redis (DATABASE_URL /
REDIS_URL, defaulting to this machine's services and a `hearo_cluster`
database). With HEARO_CLUSTER_HA set (`make cluster HA=1`) the nodes use a
Redis Sentinel topology of their own instead (a primary, a replica, three
sentinels: bench/redis_ha.py). With HEARO_ASGI_SERVER=uvicorn (`make cluster
HEARO_ASGI_SERVER=uvicorn`) the socket nodes run on Uvicorn instead of Daphne,
through deploy/serve as in the compose file. Runs until Ctrl-C. The same
process launcher serves the benchmarks (bench/cluster.py).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster import Cluster, asgi_server, cluster  # noqa: E402
from bench.redis_ha import RedisHa, redis_ha, redis_ha_available  # noqa: E402


def database_ensure(admin: str, database: str) -> None:
    """Create the cluster's database unless it exists; say plainly what to do if we may not."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", database):
        sys.exit(f"make cluster: use a plain database name in DATABASE_URL, not {database!r}")
    found = subprocess.run(
        ["psql", admin, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],  # noqa: S608 (checked above)
        capture_output=True,
        text=True,
    )
    if found.returncode == 0 and found.stdout.strip() == "1":
        return
    made = subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{database}"'], capture_output=True, text=True)
    if made.returncode != 0:
        sys.exit(
            f"make cluster: could not create the database {database!r} ({made.stderr.strip()}).\n"
            "Create it yourself, or give DATABASE_URL a PostgreSQL role that may create databases "
            "(ALTER ROLE … CREATEDB)."
        )


def ha_requested() -> bool:
    """Return whether `make cluster HA=1` asked for Redis Sentinel (HA=, HA=0 and HA=no do not)."""
    return os.environ.get("HEARO_CLUSTER_HA", "").strip().lower() not in ("", "0", "no", "false")


@contextmanager
def redis_sentinels(logdir: Path) -> Iterator[RedisHa | None]:
    """Run a Sentinel topology for the nodes when asked; yield None (the local Redis) otherwise."""
    if not ha_requested():
        yield None
        return
    if not redis_ha_available():
        sys.exit("make cluster HA=1: needs redis-server and redis-sentinel on PATH (apt-get install redis-sentinel)")
    with redis_ha(logdir) as ha:
        yield ha


def prepare(env: dict) -> None:
    """Create and migrate the database and the demo users, as the compose file's migrate service does."""
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    database_ensure(admin, database)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "ensure_demo_counselor"], cwd=ROOT, env=env, check=True)


def print_urls(running: Cluster, logdir: Path) -> None:
    first = running.ports[0]
    print(f"\nOpen http://127.0.0.1:{first}/ (the waiting page) and http://127.0.0.1:{first}/counselor/")
    print("(the dashboard; log in as counselor1), in two browsers to see a match across nodes.")
    for port in running.ports:
        print(f"  socket node:  http://127.0.0.1:{port}/")
    for port in running.rest_ports:
        print(f"  REST node:    http://127.0.0.1:{port}/api/  (what the compose proxy sends /api/ to)")
    print(f"  worker and beat running; logs in {logdir}; Ctrl-C stops everything", flush=True)


def print_failover_help(ha: RedisHa) -> None:
    primary = ha.primary_port()
    ports = ", ".join(map(str, ha.sentinel_ports))
    print(f"\nRedis Sentinel: master {ha.master_name!r}, sentinels on 127.0.0.1 ports {ports}")
    for port, proc in ha.servers.items():
        print(f"  redis-server on {port}, pid {proc.pid} ({'primary' if port == primary else 'replica'})")
    print("To see a failover (the sentinels promote the replica about 2 s after the primary stops answering):")
    print(f"  freeze the primary:  redis-cli -p {primary} DEBUG SLEEP 30  (it wakes up as the new one's replica)")
    print(f"  or kill it:          kill -9 {ha.servers[primary].pid}  (it stays down; a second failover needs it)")
    where = f"redis-cli -p {ha.sentinel_ports[0]} SENTINEL get-master-addr-by-name {ha.master_name}"
    print(f"  the primary now:     {where}", flush=True)


def run_until_stopped(running: Cluster) -> None:
    """Wait for Ctrl-C, SIGTERM or an app process that exits (Redis servers may die: that is the point of HA)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(p.proc.poll() is None for p in [*running.nodes, *running.rest_nodes, *running.others]):
            time.sleep(1)
        print("a process exited; stopping the cluster", file=sys.stderr)
    except KeyboardInterrupt:
        pass


def main() -> None:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/hearo_cluster")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "hearo.settings")
    try:
        server = asgi_server(env)  # a typo fails here, before the database and Redis are touched
    except ValueError as exc:
        sys.exit(f"make cluster: {exc}")
    logdir = Path(tempfile.mkdtemp(prefix="hearo-cluster-"))
    with redis_sentinels(logdir) as ha:
        if ha:
            # REDIS_URL emptied, REDIS_SENTINELS set: every Redis client of the app asks the sentinels.
            env.update(ha.env())
        prepare(env)
        with cluster("cluster", env, logdir, nodes=2, rest_nodes=1, celery=True) as running:
            print_urls(running, logdir)
            weight = " at three times their CPU weight" if running.rest_weighted else ""
            print(f"  socket nodes on {server} (HEARO_ASGI_SERVER), the REST node on daphne{weight}", flush=True)
            if ha:
                print_failover_help(ha)
            run_until_stopped(running)


if __name__ == "__main__":
    main()
