"""Real Daphne nodes and a queue of customers for the third-party client tests.

One node serves customers as in production; a second runs the STOMP
conformance broker (HEARO_STOMP_TEST_BROKER=1). Both live for the whole
interop package: starting Daphne costs more than the tests themselves.
"""

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ROOT, daphne
from tests.test_server import call

STOMPJS_SCRIPT = Path(__file__).parent / "stompjs_client.mjs"
TEST_DESTINATION = "/topic/test/x"


@dataclass(frozen=True)
class Node:
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str = "/ws/stomp") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@dataclass(frozen=True)
class Queue:
    """Three customers who joined in this order: `ahead` (rank 1), `me` (rank 2), `other`."""

    ahead: dict
    me: dict
    other: dict


# The autouse _fresh_leases fixture deletes every "<cache prefix>:*" key before
# each test; with the Makefile's prefixes that includes the channel layer's
# "hearo-test:group:…" keys, so a node that outlives one test would drop out of
# its groups (the hub never hears the next queue change). Nodes that live for
# the session therefore get a channel prefix of their own.
CHANNEL_PREFIX = f"hearo-test-interop-{secrets.token_hex(3)}"


@pytest.fixture(scope="package")
def customer_node(tmp_path_factory, django_db_setup, django_db_blocker):
    log_dir = tmp_path_factory.mktemp("interop")
    with django_db_blocker.unblock(), daphne(log_dir, "customers", HEARO_CHANNEL_PREFIX=CHANNEL_PREFIX) as (port, _):
        yield Node(port)


@pytest.fixture(scope="package")
def broker_node(tmp_path_factory, django_db_setup, django_db_blocker):
    log_dir = tmp_path_factory.mktemp("interop-broker")
    env = {"HEARO_CHANNEL_PREFIX": CHANNEL_PREFIX, "HEARO_STOMP_TEST_BROKER": "1"}
    with django_db_blocker.unblock(), daphne(log_dir, "broker", **env) as (port, _):
        yield Node(port)


@pytest.fixture
def queue(customer_node) -> Queue:
    joined = []
    for _ in range(3):
        status, body = call(customer_node.port, "POST", "/api/queue/join", body={})
        assert status == 201, body
        joined.append(body)
    return Queue(*joined)


@pytest.fixture(scope="package")
def stompjs():
    """Run stompjs_client.mjs under Node; return the JSON lines it printed."""
    assert shutil.which("node"), "Node 20 is required (make test installs the npm packages)"
    assert (ROOT / "node_modules" / "@stomp" / "stompjs").is_dir(), "run `make install` (npm ci) first"

    def run(scenario: str, factory: str, config: dict) -> list[dict]:
        args = ["node", "--experimental-websocket", str(STOMPJS_SCRIPT), scenario, factory]
        result = subprocess.run(args, cwd=ROOT, input=json.dumps(config), capture_output=True, text=True, timeout=60)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert result.returncode == 0, (lines, result.stderr[-4000:])
        return lines

    return run
