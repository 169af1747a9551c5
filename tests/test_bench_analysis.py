"""RESULTS.md's reading of a run is computed from that run: a run that contradicts a hypothesis says so."""

from bench.analysis import analysis_section


def run(latencies: list[float], collections: list[int], **extra) -> dict:
    hub = {
        "all": {
            "latency_ms": {"p50": 100.0, "p99": max(latencies) * 1000},
            "changes": len(latencies),
            "affected_mean": 1000,
            "missing": 0,
        },
        "audit": {"wrong": 0, "missing": 0},
        "cancel": {"request_ms": {"p50": 20.0}},
        "node_fanout_mean_ms": [80.0, 90.0],
        "changes_raw": [{"latency": s, "affected": 1000} for s in latencies],
        "node_full_collections": [{"count": c, "total_ms": 500.0 * c, "over_100ms": c} for c in collections],
    }
    return {"fanout": {"hub": {"5000": hub}, **extra}}


def test_slow_changes_without_a_full_collection_refute_the_gc_reading():
    text = analysis_section(run([0.1] * 19 + [0.6], collections=[0, 0]))
    assert "Changes over twice the median (100 ms): 600 ms" in text
    assert "**not supported**: no full collection ran on either node" in text


def test_slow_changes_with_as_many_full_collections_are_consistent_with_it():
    text = analysis_section(run([0.1] * 18 + [0.6, 0.7], collections=[1, 1]))
    assert "Full collections on the nodes meanwhile" in text and ": 2, 1000 ms in all" in text
    assert "Verdict: consistent" in text


def test_the_relay_comparison_says_who_is_ahead_from_the_numbers():
    relay = {"5000": {"n": 5000, "all": {"latency_ms": {"p50": 50.0, "p99": 900.0}}}}
    text = analysis_section(run([0.1] * 20, collections=[0, 0], rabbitmq=relay))
    assert "relay 50.0 ms / 900 ms" in text and "**not ahead on both**" in text
    relay["5000"]["n"] = 800  # capped below N: no verdict
    assert "reached only 800 clients, not comparable" in analysis_section(run([0.1] * 20, [0, 0], rabbitmq=relay))
