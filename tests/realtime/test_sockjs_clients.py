"""sockjs-client 1.6 + @stomp/stompjs 7 under Node 20, each SockJS transport forced in turn."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT, daphne
from tests.test_server import call

SCRIPT = Path(__file__).parent / "js" / "sockjs_stomp.mjs"


@pytest.fixture(scope="module")
def node_port(tmp_path_factory, django_db_setup, django_db_blocker):
    assert shutil.which("node"), "Node 20 is required (make test installs the npm packages)"
    with django_db_blocker.unblock(), daphne(tmp_path_factory.mktemp("sockjs-node")) as (port, _proc):
        yield port


def run_client(port: int, transport: str, me: dict, ahead: dict, foreign: dict) -> list[dict]:
    args = ["node", str(SCRIPT), f"http://127.0.0.1:{port}", transport]
    args += [me["token"], me["customerId"], ahead["token"], foreign["customerId"]]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (result.stdout, result.stderr)
    return lines


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming", "xhr-polling", "eventsource"])
def test_stompjs_over_each_sockjs_transport(node_port, transport):
    _, ahead = call(node_port, "POST", "/api/queue/join", body={})
    _, me = call(node_port, "POST", "/api/queue/join", body={})
    _, foreign = call(node_port, "POST", "/api/queue/join", body={})
    events = run_client(node_port, transport, me, ahead, foreign)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "connected"
    messages = [e["body"] for e in events if e["event"] == "message"]
    assert [(m["status"], m["rank"]) for m in messages] == [("WAITING", 2), ("WAITING", 1)]
    assert all(m["customerId"] == me["customerId"] for m in messages)
    assert {"event": "cancelled-ahead", "status": 200} in events
    receipt = next(e for e in events if e["event"] == "disconnect-receipt")
    assert receipt["receiptId"].startswith("close-")
    assert next(e for e in events if e["event"] == "foreign-error")["message"] == "subscription refused"
    assert "leak" not in kinds
