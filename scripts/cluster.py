"""`make cluster`: the docker-compose topology as local processes on 127.0.0.1.

Two Daphne nodes for the sockets, one for the REST API, one Celery worker and
exactly one beat, against the local PostgreSQL and Redis (DATABASE_URL /
REDIS_URL, defaulting to this machine's services and a `hearo_cluster`
database). Runs until Ctrl-C. The same process launcher serves the benchmarks
(bench/cluster.py).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster import cluster  # noqa: E402


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


def main() -> None:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/hearo_cluster")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "hearo.settings")
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    database_ensure(admin, database)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "ensure_demo_counselor"], cwd=ROOT, env=env, check=True)
    logdir = Path(tempfile.mkdtemp(prefix="hearo-cluster-"))
    with cluster("cluster", env, logdir, nodes=2, rest_nodes=1, celery=True) as running:
        first = running.ports[0]
        print(f"\nOpen http://127.0.0.1:{first}/ (the waiting page) and http://127.0.0.1:{first}/counselor/")
        print("(the dashboard; log in as counselor1), in two browsers to see a match across nodes.")
        for port in running.ports:
            print(f"  socket node:  http://127.0.0.1:{port}/")
        for port in running.rest_ports:
            print(f"  REST node:    http://127.0.0.1:{port}/api/  (what the compose proxy sends /api/ to)")
        print(f"  worker and beat running; logs in {logdir}; Ctrl-C stops everything", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while all(p.proc.poll() is None for p in [*running.nodes, *running.rest_nodes, *running.others]):
                time.sleep(1)
            print("a process exited; stopping the cluster", file=sys.stderr)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
