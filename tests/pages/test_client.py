"""hearo-client.js's delivery rule under Node: versions and seqs drop stale news, snapshots are the truth."""

import json
import shutil
import subprocess
from pathlib import Path

from tests.support.processes import ROOT

SCRIPT = Path(__file__).parent / "js" / "client_versions.mjs"


def deliver(steps: list) -> dict:
    assert shutil.which("node"), "Node 20 is required"
    result = subprocess.run(
        ["node", "--experimental-detect-module", "--no-warnings", str(SCRIPT), json.dumps(steps)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def waiting(rank: int, version: int) -> dict:
    return {"status": "WAITING", "rank": rank, "version": version}


def test_a_waiting_message_older_than_the_newest_seen_is_dropped():
    out = deliver([[waiting(3, 5), True], [waiting(2, 7), False], [waiting(3, 6), False], [waiting(2, 7), False]])
    assert [(m["rank"], m["version"]) for m in out["shown"]] == [(3, 5), (2, 7), (2, 7)]


def test_the_snapshot_after_a_resubscribe_is_the_truth_even_if_older():
    out = deliver([[waiting(2, 7), True], [waiting(9, 2), True], [waiting(8, 3), False], [waiting(7, 1), False]])
    assert [m["rank"] for m in out["shown"]] == [2, 9, 8]
    assert [m["snapshot"] for m in out["shown"]] == [True, True, False]


def test_unversioned_news_always_passes_and_queue_summaries_are_versioned_too():
    matched = {"status": "MATCHED", "roomName": "hearo_x", "matchId": 4}
    queue_old, queue_new = ({"type": "QUEUE", "waiting": n, "version": v} for n, v in ((3, 1), (2, 9)))
    out = deliver([[waiting(1, 8), True], [matched, False], [queue_old, False], [queue_new, False]])
    assert [m.get("status") or m["type"] for m in out["shown"]] == ["WAITING", "MATCHED", "QUEUE"]
    assert out["shown"][-1]["waiting"] == 2


def test_format_fills_named_placeholders():
    assert deliver([])["formatted"] == "1 and two"


def test_a_message_about_an_older_change_to_the_visit_is_dropped():
    # A requeue's WAITING (seq 11) arriving after the expiry that followed it (seq 12).
    expired = {"status": "EXPIRED", "reason": "lease_expired", "seq": 12}
    requeued = waiting(1, 40) | {"seq": 11}
    out = deliver([[waiting(3, 30) | {"seq": 10}, True], [expired, False], [requeued, False]])
    assert [m["status"] for m in out["shown"]] == ["WAITING", "EXPIRED"]


def test_a_snapshot_resets_the_visits_seq():
    out = deliver([[{"status": "MATCHED", "seq": 20}, True], [waiting(2, 5) | {"seq": 7}, True]])
    assert [m["status"] for m in out["shown"]] == ["MATCHED", "WAITING"]
