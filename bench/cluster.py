"""The processes under test: a private Redis, the bench database, Daphne (or Uvicorn) nodes, Celery.

Every process runs in its own session so it can be stopped with its children
(``os.killpg``), and only processes started here are ever stopped.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# HEARO_BENCH_DB: another name, so a second checkout can run the suite beside this one.
BENCH_DB = os.environ.get("HEARO_BENCH_DB", "hearo_bench")
PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: "Proc", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{proc.name}: nothing listening on {port} after {timeout}s")


def wait_healthy(port: int, proc: "Proc", timeout: float = 60.0) -> None:
    """Wait until a node answers ``/healthz``, as docker-compose.yml's proxy waits for every node's health check.

    Its first request is where a node freezes the heap it loaded (realtime/gc_policy.py): in
    production the health check pays that pause, not the first customer.
    """
    wait_for_port(port, proc, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} never answered /healthz:\n{proc.tail()}")
        time.sleep(0.1)


class Proc:
    """A subprocess in its own session, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict, logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        self.log.close()

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB (from /proc, no psutil)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# The REST node's CPU weight, as docker-compose.yml's api service gets it (cpu_shares: 3072, three
# times a socket node's): on a shared host the socket nodes' fan-out bursts must not starve the
# heartbeats (measured: bench/RESULTS.md). Here every process runs in a session of its own, so in
# an autogroup of its own (the kernel's CPU group per session), whose nice value sets the group's
# weight: -5 is 3,121 against a default group's 1,024, the same three times.
REST_NICE = -5


def cpu_weight(pid: int, nice: int) -> bool:
    """Set the CPU weight of a process's autogroup (its session's group); say whether it took effect."""
    try:
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
            return False
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return Path(f"/proc/{pid}/autogroup").read_text().split()[-1:] == [str(nice)]  # init's group: empty
    except OSError:  # no autogroups, or not allowed a negative nice (needs CAP_SYS_NICE)
        return False


# -- Redis and PostgreSQL ------------------------------------------------------------


@contextmanager
def private_redis(logdir: Path):
    """Run a throwaway redis-server: its command counts are ours alone."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = Proc("redis", [*args, "--maxclients", "20000"], dict(os.environ), logdir)
    try:
        wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


def database_url() -> str:
    return f"postgres://root@127.0.0.1:5432/{BENCH_DB}"


def database_recreate() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def database_drop() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def migrate(env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)


# -- The nodes under test -------------------------------------------------------------


@dataclass
class Cluster:
    name: str
    ports: list[int]
    nodes: list[Proc]
    others: list[Proc] = field(default_factory=list)
    rest_ports: list[int] = field(default_factory=list)  # nodes that hold no sockets (the REST API's)
    rest_nodes: list[Proc] = field(default_factory=list)
    rest_weighted: bool = False  # the REST nodes run at REST_NICE (as deployed), not a socket node's weight

    def rest_weight(self, nice: int) -> bool:
        """Set every REST node's CPU weight (0: a socket node's); return whether it took effect."""
        applied = bool(self.rest_nodes) and all([cpu_weight(proc.pid, nice) for proc in self.rest_nodes])
        self.rest_weighted = applied and nice != 0
        return applied

    def pid(self, node: int) -> int:
        return self.nodes[node].pid


ASGI_SERVERS = ("daphne", "uvicorn")
SERVE = ROOT / "deploy" / "serve"


def asgi_server(env: dict) -> str:
    """Return the socket nodes' server, HEARO_ASGI_SERVER (daphne unless set); refuse any other name."""
    server = env.get("HEARO_ASGI_SERVER", "").strip().lower() or "daphne"
    if server not in ASGI_SERVERS:
        raise ValueError(f"HEARO_ASGI_SERVER must be one of {', '.join(ASGI_SERVERS)}, not {server!r}")
    return server


def _asgi_node(name: str, server: str, env: dict, logdir: Path) -> tuple[int, Proc]:
    """Start one node on a free port through deploy/serve, the compose file's command (same flags)."""
    port = free_port()
    # The script names the servers by name: this venv's, whatever PATH the caller had.
    env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}"}
    return port, Proc(name, ["sh", str(SERVE), server, "127.0.0.1", str(port)], env, logdir)


# Workers that neither gossip, mingle nor send event heart-beats: HearO uses none of
# them, and Celery 5.7's Gossip step fails to restart after a broker failover.
WORKER_QUIET = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def _celery(name: str, env: dict, logdir: Path) -> Proc:
    if name.endswith("beat"):
        args = ["beat", "-s", str(logdir / f"{name}-schedule"), "-l", "warning"]
    else:
        args = ["worker", "--pool=solo", "-l", "info", "-n", f"{name}@%h", *WORKER_QUIET]
    return Proc(name, [str(VENV_BIN / "celery"), "-A", "hearo", *args], env, logdir)


def _wait_ready(worker: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in worker.log_path.read_text(errors="replace"):
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{worker.name} did not start:\n{worker.tail()}")
        time.sleep(0.2)


@contextmanager
def cluster(
    name: str, env: dict, logdir: Path, *, nodes: int = 2, rest_nodes: int = 0, celery: bool = False, **extra: str
):
    """Run ``nodes`` socket nodes, ``rest_nodes`` REST-only Daphne nodes (and a Celery worker and beat).

    The socket nodes run the server HEARO_ASGI_SERVER names (in ``env`` or
    ``extra``); a REST node is Daphne, as docker-compose.yml's ``api``, and
    holds no sockets only because nobody connects one to it (the proxy sends it /api/).
    """
    env = {**env, **extra}
    server = asgi_server(env)  # before anything starts: a bad name fails alone
    started: list[Proc] = []
    try:
        ports = []
        for i in range(nodes + rest_nodes):
            label = f"node{i}" if i < nodes else f"rest{i - nodes}"
            port, proc = _asgi_node(f"{name}-{label}", server if i < nodes else "daphne", env, logdir)
            started.append(proc)
            ports.append(port)
        others = [_celery(f"{name}-{kind}", env, logdir) for kind in ("worker", "beat")] if celery else []
        started += others
        for port, proc in zip(ports, started, strict=False):
            wait_healthy(port, proc)
        for proc in others[:1]:
            _wait_ready(proc)
        running = Cluster(
            name=name,
            ports=ports[:nodes],
            nodes=started[:nodes],
            others=others,
            rest_ports=ports[nodes:],
            rest_nodes=started[nodes : nodes + rest_nodes],
        )
        running.rest_weight(REST_NICE)
        yield running
    finally:
        for proc in reversed(started):
            proc.stop()
