"""`make cluster`: the docker-compose topology as local processes on 127.0.0.1.

Two Daphne nodes for the sockets, one for the REST API, one Celery worker and
exactly one beat, against the local PostgreSQL and Redis (DATABASE_URL /
REDIS_URL, defaulting to this machine's services and a `hearo_cluster`
database). Runs until Ctrl-C. The same process launcher serves the benchmarks
(bench/cluster.py).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster import cluster  # noqa: E402


def main() -> None:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/hearo_cluster")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "hearo.settings")
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {database}"], capture_output=True)  # may exist
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "ensure_demo_counselor"], cwd=ROOT, env=env, check=True)
    logdir = Path(tempfile.mkdtemp(prefix="hearo-cluster-"))
    with cluster("cluster", env, logdir, nodes=2, rest_nodes=1, celery=True) as running:
        for port in running.ports:
            print(f"socket node: http://127.0.0.1:{port}/")
        for port in running.rest_ports:
            print(f"REST node (what the proxy sends /api/ to): http://127.0.0.1:{port}/api/")
        print(f"worker and beat running; logs in {logdir}; Ctrl-C stops everything", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while all(p.proc.poll() is None for p in [*running.nodes, *running.rest_nodes, *running.others]):
                time.sleep(1)
            print("a process exited; stopping the cluster", file=sys.stderr)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
