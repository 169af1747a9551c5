"""bench/redis_ha.py runs a real Sentinel topology: a killed primary is replaced, and comes back as a replica.

The app's failover tests stand on this launcher, so it is proven on its own
first. No database: only Redis processes of its own, on free ports.
"""

import pytest
import redis

from bench.redis_ha import redis_ha, redis_ha_available
from tests.conftest import need

pytestmark = pytest.mark.slow


@pytest.fixture
def ha(tmp_path):
    need(redis_ha_available(), "redis-sentinel (apt-get install redis-sentinel)")  # skipped locally only, never in CI
    # These tests prove the launcher's steps, not how fast Sentinel fails over (the bench measures that at
    # 1 s). A 2.5 s down-after keeps a stall of the shared box from starting a failover nobody asked for,
    # which would swap the roles the test names.
    with redis_ha(tmp_path, down_after_ms=2500) as running:
        yield running
        # Shown only for a failed test: each sentinel's account of the failovers it saw.
        print(running.logs())


def server(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True)


def test_it_names_the_sentinels_in_the_apps_settings_and_empties_redis_url(ha):
    env = ha.env()
    assert env["REDIS_URL"] == ""
    assert env["REDIS_SENTINEL_MASTER"] == "mymaster"
    assert env["REDIS_SENTINELS"].split(",") == [f"127.0.0.1:{port}" for port in ha.sentinel_ports]
    assert len(set(ha.sentinel_ports)) == 3
    assert server(ha.primary_port()).execute_command("ROLE")[0] == "master"


def test_a_killed_primary_is_replaced_by_its_replica_twice_and_keeps_the_data(ha):
    first = ha.primary_port()
    writer = server(first)
    writer.set("hearo-ha-check", "kept")
    # Replication is asynchronous: wait until the replica holds the write before the kill.
    assert writer.execute_command("WAIT", 1, 10_000) == 1
    writer.close()

    assert ha.kill_primary() == first
    second = ha.wait_promoted(first, timeout=60)
    assert second != first and second in ha.servers
    assert server(second).get("hearo-ha-check") == "kept"

    ha.restart(first)
    # The old primary comes back empty and as a primary; the sentinels make it a replica of the new one.
    assert ha.wait_replicas(1, timeout=60) == second
    role, host, port, link = server(first).execute_command("ROLE")[:4]
    assert (role, host, port, link) == ("slave", "127.0.0.1", second, "connected")

    assert ha.kill_primary() == second
    assert ha.wait_promoted(second, timeout=60) == first
    assert server(first).get("hearo-ha-check") == "kept"
