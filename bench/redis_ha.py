"""A Redis Sentinel topology as local processes: a primary, replicas and sentinels on free 127.0.0.1 ports.

The same launcher serves `make cluster HA=1`, the failover integration test and
the bench. Every probe goes through redis-py, as the app's clients do; only
processes started here are ever stopped (bench/cluster.py's ``Proc``).
"""

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.cluster import Proc, free_port, wait_for_port

HOST = "127.0.0.1"


def redis_ha_available() -> bool:
    """Return whether both Debian binaries this launcher runs are on PATH."""
    return bool(shutil.which("redis-server") and shutil.which("redis-sentinel"))


def _client(port: int) -> redis.Redis:
    # Short timeouts: a probe of a killed or sleeping server must not stall the caller's deadline.
    return redis.Redis(host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)


def _ask(port: int, *command) -> object:
    """Send one command to the server or sentinel on ``port``; return None if it does not answer."""
    client = _client(port)
    try:
        return client.execute_command(*command)
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    finally:
        client.close()


def _pairs(flat: list) -> dict:
    """Turn a raw sentinel reply (name, value, name, value, …) into a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis HA: {what} after {timeout}s")
        time.sleep(0.2)


def _replicas_in_sync(port: int) -> int:
    """Count the replicas ``port`` reports as connected and done with their initial sync."""
    client = _client(port)
    try:
        info = client.info("replication")
    except (redis.ConnectionError, redis.TimeoutError):
        return 0
    finally:
        client.close()
    if info.get("role") != "master":
        return 0
    replicas = [value for key, value in info.items() if key.startswith("slave") and isinstance(value, dict)]
    return sum(1 for replica in replicas if replica.get("state") == "online")


@dataclass
class RedisHa:
    master_name: str
    servers: dict[int, Proc]  # port -> redis-server Proc (primary and replica)
    sentinel_ports: list[int]
    sentinels: list[Proc]
    logdir: Path = field(repr=False)
    server_args: dict[int, list[str]] = field(default_factory=dict, repr=False)
    restarts: int = 0

    def sentinels_setting(self) -> str:
        """Return the REDIS_SENTINELS value for these sentinels."""
        return ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)

    def env(self) -> dict:
        """Return the settings that switch every Redis client of the app to these sentinels."""
        return {
            "REDIS_URL": "",
            "REDIS_SENTINELS": self.sentinels_setting(),
            "REDIS_SENTINEL_MASTER": self.master_name,
        }

    def primary_port(self) -> int:
        """Return the primary's port as the first live sentinel names it."""
        for port in self.sentinel_ports:
            address = _ask(port, "SENTINEL", "get-master-addr-by-name", self.master_name)
            if address:
                return int(address[1])
        raise RuntimeError("Redis HA: no sentinel answered")

    def kill_primary(self) -> int:
        """SIGKILL the current primary's process (no shutdown, no goodbye to its replicas); return its port."""
        port = self.primary_port()
        proc = self.servers[port]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)
        return port

    def wait_promoted(self, old_port: int, timeout: float = 30) -> int:
        """Wait until every live sentinel names a primary other than ``old_port`` and it is one; return its port."""
        found: list[int] = []

        def promoted() -> bool:
            port = self._agreed_primary()
            if port is None or port == old_port:
                return False  # a sentinel still names the old primary, or they disagree mid-failover
            role = _ask(port, "ROLE")
            found[:] = [port]
            return bool(role) and role[0] == "master"

        _wait(f"no replica of {old_port} promoted", promoted, timeout)
        return found[0]

    def restart(self, port: int) -> None:
        """Start a killed server again on its port with the same arguments.

        It comes back as an empty primary (nothing is saved); the sentinels turn
        it into a replica of the promoted one some seconds later.
        """
        if self.servers[port].proc.poll() is None:
            raise RuntimeError(f"Redis HA: the server on {port} is still running")
        self.servers[port].stop()  # closes the old log
        self.restarts += 1
        proc = Proc(f"redis-{port}-restart{self.restarts}", self.server_args[port], dict(os.environ), self.logdir)
        self.servers[port] = proc
        wait_for_port(port, proc)

    def wait_replicas(self, count: int = 1, timeout: float = 30) -> int:
        """Wait until the primary has ``count`` replicas in sync and every sentinel sees them up; return its port.

        Each side is asked: the live sentinels name one primary, the
        primary counts the replicas online, and each replica says it follows
        that primary over a connected link. Both the primary's and the
        sentinels' view matter for the next kill: a sentinel promotes only a
        replica it knows and does not hold for down.
        """
        found: list[int] = []

        def ready() -> bool:
            primary = self._agreed_primary()
            if primary is None:
                return False  # they disagree mid-failover
            found[:] = [primary]
            following = [port for port in self.servers if port != primary and self._follows(port, primary)]
            return (
                len(following) >= count
                and _replicas_in_sync(primary) >= count
                and all(self._replicas_up(port) >= count for port in self.sentinel_ports if self.sentinel_alive(port))
            )

        _wait(f"fewer than {count} replicas in sync", ready, timeout)
        return found[0]

    def logs(self, lines: int = 60) -> str:
        """Return the last lines of every sentinel's and server's log, to read a failover's story after the fact."""
        procs = [*self.sentinels, *self.servers.values()]
        return "\n".join(f"--- {proc.name}\n{proc.tail(lines)}" for proc in procs)

    def _follows(self, port: int, primary: int) -> bool:
        """Return whether the server on ``port`` is a replica of ``primary`` with its link up."""
        role = _ask(port, "ROLE")  # None from a server that is down
        return bool(role) and role[0] == "slave" and int(role[2]) == primary and role[3] == "connected"

    def sentinel_alive(self, port: int) -> bool:
        return self.sentinels[self.sentinel_ports.index(port)].proc.poll() is None

    def _agreed_primary(self) -> int | None:
        """Return the primary every live sentinel that answers names, or None while they disagree."""
        named = {self._named_by(port) for port in self.sentinel_ports if self.sentinel_alive(port)}
        named.discard(None)
        return named.pop() if len(named) == 1 else None

    def _named_by(self, sentinel: int) -> int | None:
        address = _ask(sentinel, "SENTINEL", "get-master-addr-by-name", self.master_name)
        return int(address[1]) if address else None

    def _replicas_up(self, sentinel: int) -> int:
        """Count the replicas ``sentinel`` holds for up (neither down nor disconnected).

        Not whether it has seen them attached: a sentinel reads a replica's INFO
        every 10 s, and every second once the primary is down, so it has fresh
        figures before it picks one to promote.
        """
        replicas = [_pairs(flat) for flat in _ask(sentinel, "SENTINEL", "replicas", self.master_name) or []]
        return sum(1 for replica in replicas if replica["flags"] == "slave")

    def _knows_everyone(self, sentinel: int, replicas: int) -> bool:
        """Return whether ``sentinel`` has found the replicas and every other sentinel."""
        master = _ask(sentinel, "SENTINEL", "master", self.master_name)
        if not master:
            return False
        found = _pairs(master)
        return (
            int(found["num-slaves"]) >= replicas and int(found["num-other-sentinels"]) == len(self.sentinel_ports) - 1
        )


# -- Starting the processes ------------------------------------------------------------


def _server_args(port: int, workdir: Path, primary: int | None) -> list[str]:
    # As bench/cluster.py's private_redis: nothing saved, so a restarted primary comes back empty.
    args = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    # No 5 s wait before a diskless full sync (Redis 7's default): a replica is in sync in well under a second.
    args += ["--maxclients", "20000", "--dir", str(workdir), "--repl-diskless-sync-delay", "0"]
    # DEBUG SLEEP from this machine freezes a primary without killing it: a failover you can watch and undo.
    args += ["--enable-debug-command", "local"]
    return args + (["--replicaof", HOST, str(primary)] if primary else [])


def _sentinel_conf(port: int, primary: int, workdir: Path, name: str, timing: dict) -> Path:
    """Write a sentinel's config file (sentinel rewrites it as it learns, so each gets its own)."""
    path = workdir / f"sentinel-{port}.conf"
    path.write_text(
        f"port {port}\nbind {HOST}\ndir {workdir}\n"
        f"sentinel monitor {name} {HOST} {primary} {timing['quorum']}\n"
        f"sentinel down-after-milliseconds {name} {timing['down']}\n"
        f"sentinel failover-timeout {name} {timing['failover']}\n"
        f"sentinel parallel-syncs {name} 1\n"
    )
    return path


def _start_servers(logdir: Path, replicas: int) -> tuple[dict[int, Proc], dict[int, list[str]]]:
    servers: dict[int, Proc] = {}
    args: dict[int, list[str]] = {}
    primary = None
    try:
        for _ in range(1 + replicas):
            port = free_port()
            args[port] = _server_args(port, Path(tempfile.mkdtemp(prefix=f"redis-{port}-", dir=logdir)), primary)
            servers[port] = Proc(f"redis-{port}", args[port], dict(os.environ), logdir)
            wait_for_port(port, servers[port])
            primary = primary or port
    except BaseException:
        _stop(servers.values())
        raise
    return servers, args


def _stop(procs) -> None:
    for proc in procs:
        proc.stop()


def _start_sentinels(logdir: Path, primary: int, name: str, count: int, timing: dict) -> dict[int, Proc]:
    workdir = Path(tempfile.mkdtemp(prefix="sentinels-", dir=logdir))
    started: dict[int, Proc] = {}
    try:
        for _ in range(count):
            port = free_port()
            conf = _sentinel_conf(port, primary, workdir, name, timing)
            started[port] = Proc(f"sentinel-{port}", ["redis-sentinel", str(conf)], dict(os.environ), logdir)
            wait_for_port(port, started[port])
    except BaseException:
        _stop(started.values())
        raise
    return started


@contextmanager
def redis_ha(
    logdir: Path,
    *,
    master_name: str = "mymaster",
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 5000,
) -> Iterator[RedisHa]:
    """Run a primary, ``replicas`` replicas and ``sentinels`` sentinels; yield once a kill would fail over.

    Raise RuntimeError when redis-sentinel is not installed (the caller decides
    whether that is a skip).
    """
    if not redis_ha_available():
        raise RuntimeError("Redis HA needs redis-server and redis-sentinel on PATH (apt-get install redis-sentinel)")
    servers, server_args = _start_servers(logdir, replicas)
    started: dict[int, Proc] = {}
    try:
        primary = next(iter(servers))
        # The replicas first, in sync: a sentinel then finds them in the primary's first INFO.
        _wait("the replicas did not sync", lambda: _replicas_in_sync(primary) >= replicas, 30)
        # A majority must agree the primary is down (2 of 3), so one confused sentinel promotes nothing.
        timing = {"quorum": sentinels // 2 + 1, "down": down_after_ms, "failover": failover_timeout_ms}
        started = _start_sentinels(logdir, primary, master_name, sentinels, timing)
        ports = list(started)
        ha = RedisHa(master_name, servers, ports, list(started.values()), logdir, server_args)
        # Sentinels find each other through hello messages on the primary (every 2 s).
        _wait("the sentinels did not find each other", lambda: all(ha._knows_everyone(p, replicas) for p in ports), 30)
        yield ha
    finally:
        # Sentinels first: with them gone, stopping the servers starts no failover.
        _stop(started.values())
        _stop(servers.values())
