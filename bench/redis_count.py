"""Count the Redis commands one queue change costs, with MONITOR on the private Redis.

MONITOR shows every command, including those a Lua script runs (client
``lua``), with its key, so each can be put in a bucket: the queue broadcast
(HearO's pub/sub channel), channel layer (other keys under the channel
prefix), cache (leases, tokens), Celery broker, or other. Keyless commands
(MULTI, EXEC, PING…) go to the bucket of their connection. An idle window of
equal length is subtracted (idle Daphne nodes poll their channels with BZPOPMIN). A channel-layer *message* is one ZADD
into a channel's sorted set (by ``send`` or inside ``group_send``'s script);
ZADDs into ``…$inflight`` are the receiver's at-least-once bookkeeping; a
PUBLISH on the queue broadcast channel (``{prefix}:queue-changed``) is one
message too, which Redis pushes to every subscribed hub with no command.
"""

import asyncio
import re
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

LINE = re.compile(r"^\S+ \[\d+ ([^\]]+)\] (.*)$")
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
SCRIPTS = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"}


class Buckets:
    def __init__(self, channel_prefix: str, cache_prefix: str) -> None:
        self.channel_prefix, self.cache_prefix = channel_prefix, cache_prefix

    def of_key(self, key: str | None) -> str | None:
        if key is None:
            return None
        if key == f"{self.channel_prefix}:queue-changed":
            return "broadcast"  # HearO's queue broadcast (settings.HEARO_QUEUE_BROADCAST)
        if key.startswith(self.channel_prefix):
            return "channel_layer"
        if key.startswith(self.cache_prefix + ":"):
            return "cache"
        if "kombu" in key or key.startswith(("celery", "unacked")):
            return "celery"
        return "other"


LEASE_RENEWALS = "lease_renewals"
LEASE_PREFIX = ":lease:registration:"


def _renews_leases(command: str, args: list[str]) -> bool:
    """A node's lease keeper renewing the customers it holds sockets for (every HEARO_HEARTBEAT_SECONDS).

    A SET per lease, or one script call per batch whose first argument is the
    lease keys' prefix (``queues.leases.arenew_many``: no keys, the ids as arguments).
    """
    if command == "SET":
        return LEASE_PREFIX in (_key(command, args) or "")
    return command in SCRIPTS and len(args) > 2 and args[1] == "0" and args[2].endswith(LEASE_PREFIX)


def _key(command: str, args: list[str]) -> str | None:
    if command in SCRIPTS:
        return args[2] if len(args) > 2 and args[1] != "0" else None
    return args[0] if args else None


def parse(text: str, buckets: Buckets) -> dict:
    """Return per-bucket top-level and in-script counts, per-command counts and channel messages."""
    rows = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            args = ARG.findall(m.group(2))
            if args:
                rows.append((m.group(1), args[0].upper(), args[1:]))
    by_conn = {}
    for client, command, args in rows:
        bucket = buckets.of_key(_key(command, args))
        if bucket and client != "lua":
            by_conn.setdefault(client, bucket)
    top, lua, commands = Counter(), Counter(), Counter()
    messages = 0
    for client, command, args in rows:
        bucket = buckets.of_key(_key(command, args)) or by_conn.get(client, "other")
        if _renews_leases(command, args):
            bucket = LEASE_RENEWALS  # whatever changes, so apart from them
        (lua if client == "lua" else top)[bucket] += 1
        commands[command + (" (in script)" if client == "lua" else "")] += 1
        key = _key(command, args) or ""
        if command == "ZADD" and bucket == "channel_layer" and ":group:" not in key and "$inflight" not in key:
            messages += 1
        elif command == "PUBLISH" and bucket == "broadcast":
            messages += 1  # the queue broadcast every hub subscribes to
    return {"top_level": dict(top), "in_scripts": dict(lua), "commands": dict(commands), "messages": messages}


async def watch(port: int, action: Callable[[], Awaitable], window: float, buckets: Buckets) -> tuple[dict, float]:
    """Run ``action`` under MONITOR for at least ``window`` seconds; return the counts and the time taken."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "monitor.txt"
        with open(out, "wb") as sink:
            proc = await asyncio.create_subprocess_exec("redis-cli", "-p", str(port), "monitor", stdout=sink)
            while not out.read_bytes().startswith(b"OK"):
                await asyncio.sleep(0.05)
            started = time.monotonic()
            await action()
            took = time.monotonic() - started
            await asyncio.sleep(max(0.0, window - took))
            proc.terminate()
            await proc.wait()
        return parse(out.read_text(errors="replace"), buckets), took


def minus(change: dict, idle: dict) -> dict:
    """Subtract the idle window's counts, bucket by bucket (never below zero)."""

    def sub(a: dict, b: dict) -> dict:
        return {k: max(0, v - b.get(k, 0)) for k, v in a.items()}

    return {
        "top_level": sub(change["top_level"], idle["top_level"]),
        "in_scripts": sub(change["in_scripts"], idle["in_scripts"]),
        "messages": max(0, change["messages"] - idle["messages"]),
        "commands": sub(change["commands"], idle["commands"]),
        "raw_change": change,
        "raw_idle": idle,
    }


async def per_change(port: int, action: Callable[[], Awaitable], buckets: Buckets, window: float = 2.0) -> dict:
    """Return the Redis commands of one change: its window minus an idle window as long."""
    change, took = await watch(port, action, window, buckets)
    idle, _ = await watch(port, _nothing, max(window, took), buckets)
    return minus(change, idle)


async def _nothing() -> None:
    return None
