"""A RabbitMQ node of the bench's own for the Web-STOMP baseline (issue #17).

The machine's broker (``rabbit@…`` on 5672) is never touched: this node has
its own name, ports, data, logs, config, enabled-plugins file and Erlang
cookie, all under the run's logdir, and an open-files limit that fits
5,000 Web-STOMP clients. It shares the machine's epmd (4369), which only
maps node names to ports.
"""

import os
import resource
import secrets
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import Proc, free_port, wait_for_port

# Not /usr/sbin/rabbitmq-*: Debian's wrappers ``su`` to the rabbitmq user, whose HOME
# holds the machine node's cookie, and cd into its data directory.
SBIN = Path("/usr/lib/rabbitmq/bin")
OPEN_FILES = 65536
START_TIMEOUT = 120.0
CONFIG = """\
listeners.tcp.local = 127.0.0.1:{amqp_port}
# rabbitmq_web_stomp pulls in rabbitmq_stomp: no plain STOMP listener (61613 may be taken).
stomp.listeners.tcp = none
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = {web_stomp_port}
# Ranch caps a listener at 1,024 connections unless told otherwise.
web_stomp.max_connections = infinity
# The subscribers send nothing after SUBSCRIBE (heart-beat 0,0): keep Cowboy's idle timer out of the way.
web_stomp.ws_opts.idle_timeout = 3600000
# A refused login is a test failure, not a lockout to wait out.
loopback_users = none
"""


@dataclass(frozen=True)
class Broker:
    node: str
    web_stomp_port: int
    pid: int
    open_files_limit: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.web_stomp_port}/ws"


def open_files_wanted() -> int:
    """Return the broker's open-files limit: 65,536, or the hard limit if that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)


def soft_open_files(pid: int) -> int:
    """Return a process's soft open-files limit, as the kernel holds it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise RuntimeError(f"no open-files limit for {pid}")


def node_home(base: Path) -> Path:
    """Create the HOME that the node and rabbitmqctl share, with a fresh Erlang cookie.

    Both read ``$HOME/.erlang.cookie``; Erlang refuses a cookie file that
    others can read, hence mode 600.
    """
    home = base / "home"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20))
    cookie.chmod(0o600)
    return home


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (each probe releases its port, so one could come back twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def node_env(base: Path, node: str, amqp_port: int, dist_port: int, web_stomp_port: int) -> dict:
    """Write the node's config files under ``base``; return the environment of its processes."""
    (base / "rabbitmq.conf").write_text(CONFIG.format(amqp_port=amqp_port, web_stomp_port=web_stomp_port))
    # Management stays off: only Web-STOMP (and the plugins it depends on) start.
    (base / "enabled_plugins").write_text("[rabbitmq_web_stomp].\n")
    # An empty env file instead of /etc/rabbitmq/rabbitmq-env.conf, which names the machine's node.
    (base / "rabbitmq-env.conf").write_text("")
    return {
        **os.environ,
        "HOME": str(node_home(base)),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        # The default (AMQP port + 20,000) can collide with anything, or pass 65,535.
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_CONFIG_FILES": str(base / "conf.d" / "*.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def ctl(env: dict, node: str, *args: str, timeout: float = 120.0) -> str:
    """Run rabbitmqctl against the private node (same HOME, so the same cookie); return its output."""
    done = subprocess.run(
        [str(SBIN / "rabbitmqctl"), "-n", node, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


@contextmanager
def private_rabbitmq(logdir: Path):
    """Run a throwaway RabbitMQ node with Web-STOMP; yield its ``Broker``, stop it at the end."""
    base = logdir / "rabbitmq"
    base.mkdir()
    node = f"hearo-bench-{os.getpid()}@localhost"
    amqp_port, dist_port, web_stomp_port = free_ports(3)
    env = node_env(base, node, amqp_port, dist_port, web_stomp_port)
    # ulimit in the shell that becomes the broker: the node sizes its socket budget from it at boot.
    script = f"ulimit -n {open_files_wanted()} && exec {SBIN / 'rabbitmq-server'}"
    proc = Proc("rabbitmq", ["bash", "-c", script], env, logdir)
    try:
        wait_for_port(web_stomp_port, proc, timeout=START_TIMEOUT)
        ctl(env, node, "await_startup", "--timeout", str(int(START_TIMEOUT)))
        # The Erlang VM runs under rabbitmq-server's signal-forwarding shell: ask it for its own pid.
        pid = int(ctl(env, node, "eval", "os:getpid().").strip('"'))
        yield Broker(node, web_stomp_port, pid, soft_open_files(pid))
    finally:
        broker_stop(env, node, proc)


def broker_stop(env: dict, node: str, proc: Proc) -> None:
    """Stop the node cleanly, then its process group (whatever the clean stop left)."""
    if proc.proc.poll() is None:
        try:
            ctl(env, node, "stop", timeout=60)
            proc.proc.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # Proc.stop below signals the group
    proc.stop()
