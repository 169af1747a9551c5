"""The bench's Redis accounting puts each command a change causes in its bucket, and the lease keepers' apart."""

from bench.redis_count import Buckets, parse
from bench.report import lease_renewals, per_change_buckets

BUCKETS = Buckets("benchl", "benchc")
LEASES = "benchc:1:lease:registration:"


def monitor(*lines: str) -> str:
    return "OK\n" + "\n".join(f"1765000000.{i:06d} {line}" for i, line in enumerate(lines))


def test_a_keepers_script_renewal_is_apart_from_the_change_and_counts_its_leases():
    text = monitor(
        '[0 127.0.0.1:5001] "PUBLISH" "benchl:queue-changed" "{}"',  # the change's broadcast
        f'[0 127.0.0.1:5002] "EVALSHA" "1f0e" "0" "{LEASES}" "1765000040000" "40" "7" "8" "9"',
        f'[0 lua] "SET" "{LEASES}7" "1765000040000" "EX" "40"',
        f'[0 lua] "SET" "{LEASES}8" "1765000040000" "EX" "40"',
        f'[0 lua] "SET" "{LEASES}9" "1765000040000" "EX" "40"',
        # The heartbeat fast path's script: a token key, then the lease prefix: a cache read-and-write.
        f'[0 127.0.0.1:5003] "EVALSHA" "9a9a" "1" "benchc:1:lease:token:ab" "{LEASES}" "1765000040000" "40"',
    )
    counted = parse(text, BUCKETS)
    assert counted["top_level"] == {"broadcast": 1, "lease_renewals": 1, "cache": 1}
    assert counted["in_scripts"] == {"lease_renewals": 3}
    assert counted["messages"] == 1
    assert lease_renewals(counted) == 3
    assert per_change_buckets(counted) == {"broadcast": 1, "cache": 1}


def test_runs_that_renewed_with_a_set_per_lease_still_read_the_same():
    text = monitor(*(f'[0 127.0.0.1:5002] "SET" "{LEASES}{i}" "1765000040000" "EX" "40"' for i in range(4)))
    counted = parse(text, BUCKETS)
    assert counted["top_level"] == {"lease_renewals": 4}
    assert lease_renewals(counted) == 4 and per_change_buckets(counted) == {}
