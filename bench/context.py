"""What every scenario needs: the server environment, the private Redis, the harness's own mode."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.redis_count import Buckets

# The suite's phases in the order they run (``make bench`` runs them all).
PHASES = ("hub", "hub_django_heartbeat", "uvicorn", "naive", "rabbit", "matching")
CHANNEL_PREFIX = "benchl"
CACHE_PREFIX = "benchc"


@dataclass
class Context:
    env: dict
    redis_url: str
    logdir: Path
    quick: bool
    buckets: Buckets = field(default_factory=lambda: Buckets(CHANNEL_PREFIX, CACHE_PREFIX))

    @property
    def redis_port(self) -> int:
        return int(self.redis_url.rsplit(":", 1)[1].split("/")[0])


def server_env(redis_url: str, database_url: str) -> dict:
    """Return the environment of every process under test (and of the harness itself)."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hearo.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "HEARO_CHANNEL_PREFIX": CHANNEL_PREFIX,
            "HEARO_CACHE_PREFIX": CACHE_PREFIX,
            # The match scenario joins a customer per sample from one IP.
            "HEARO_JOIN_RATE": "100000/m",
            # 5,000 clients connect from 127.0.0.1, up to a hundred at once.
            "HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS": "100000",
            "LOG_LEVEL": "WARNING",
            # The connection-cap slots are refreshed every third of this: rarely
            # enough to stay out of the 2 s windows in which Redis commands are counted.
            "HEARO_CONNECTION_SLOT_SECONDS": "900",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def harness_mode(*, fanout: str, capacity: int) -> None:
    """Make the harness publish as the nodes do: bursts go out through its own channel layer.

    channels-redis enforces ``capacity`` on the sending side, so the harness's
    layer must carry the same capacity as the nodes under test.
    """
    from channels.layers import get_channel_layer
    from common import publish
    from realtime.naive_fanout import naive_fanout

    publish.queue_publisher_set(naive_fanout if fanout == "naive" else publish.queue_broadcast)
    get_channel_layer().capacity = capacity
