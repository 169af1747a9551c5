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
    assert "Full collections on the nodes meanwhile" in text and ": 2, 1000 ms in all. Verdict" in text
    assert "Verdict: consistent" in text


def test_the_reading_names_the_freeze_policys_unfreeze_cycles_among_the_collections():
    results = run([0.1] * 18 + [0.6, 0.7], collections=[1, 1])
    results["fanout"]["hub"]["5000"]["node_full_collections"][0]["freezes"] = {"leak": 1, "storm": 2}
    text = analysis_section(results)
    assert ": 2, 1000 ms in all, 1 of them the freeze policy's unfreeze cycles (the whole heap)." in text


def test_the_reading_counts_the_harness_own_full_collections_when_the_run_has_them():
    results = run([0.1] * 18 + [0.6, 0.7], collections=[0, 0])
    assert "The harness's own full collections" not in analysis_section(results)  # an older run: not measured
    results["fanout"]["hub"]["5000"]["harness_full_collections"] = {"count": 1, "total_ms": 12.4}
    assert "The harness's own full collections in the window" in analysis_section(results)
    assert "`bench/harness_gc.py`): 1, 12 ms in all." in analysis_section(results)


def test_a_measured_window_runs_with_the_harness_heap_frozen_and_counts_its_full_collections():
    import gc

    from bench.harness_gc import harness_frozen

    with harness_frozen() as seen:
        assert gc.get_freeze_count() > 0
        gc.collect()
    assert gc.get_freeze_count() == 0
    assert seen["count"] == 1 and seen["total_ms"] >= 0


def test_the_relay_comparison_says_who_is_ahead_from_the_numbers():
    relay = {"5000": {"n": 5000, "all": {"latency_ms": {"p50": 50.0, "p99": 900.0}}}}
    text = analysis_section(run([0.1] * 20, collections=[0, 0], rabbitmq=relay))
    assert "relay 50.0 ms / 900 ms" in text and "**not ahead on both**" in text
    assert "with its socket nodes on Uvicorn" not in text  # no uvicorn phase in this run
    results = run([0.1] * 20, collections=[0, 0], rabbitmq=relay)
    on_uvicorn = {"all": {"latency_ms": {"p50": 40.0, "p99": 300.0}, "missing": 0}, "audit": {"wrong": 0, "missing": 0}}
    results["uvicorn"] = {"fanout": {"5000": on_uvicorn}}
    text = analysis_section(results)
    assert "(the same hub with its socket nodes on Uvicorn: 40.0 ms / 300 ms, ahead on both: the socket server" in text
    results["uvicorn"]["fanout"]["5000"]["all"]["latency_ms"]["p99"] = 950.0
    assert "on Uvicorn: 40.0 ms / 950 ms, not ahead on both either)" in analysis_section(results)
    relay["5000"]["n"] = 800  # capped below N: no verdict
    assert "reached only 800 clients, not comparable" in analysis_section(run([0.1] * 20, [0, 0], rabbitmq=relay))


def heartbeat_run(by_second: list[float]) -> dict:
    load = {"target_rate": 500, "latency_ms": {"p50": 2.0, "p99": max(by_second)}, "p99_ms_by_second": by_second}
    rest = {"load": load, "sched": {"REST node": {"runqueue_wait_ms": 400.0, "cpu_ms": 2000.0}}}
    sockets = {"load": {"latency_ms": {"p99": 9.0}}}
    return run([0.1] * 20, [0, 0]) | {"heartbeat": {"fastpath": {"rest_node": rest, "main": sockets}}}


def test_a_heartbeat_stall_is_set_against_the_rest_nodes_full_collections():
    results = heartbeat_run([5.0, 6.0, 180.0, 5.5, 7.0])
    rest = results["heartbeat"]["fastpath"]["rest_node"]
    rest["node_full_collections"] = [{"count": 1, "total_ms": 20.0}]
    rest["fanout_during"] = {"request_ms": {"max": 298.8}}
    text = analysis_section(results)
    assert "Full collections on the REST node in the window: 1, 20 ms in all — not the stall's cause." in text
    assert "The slowest cancel request sent to it meanwhile took 299 ms." in text
    rest["node_full_collections"] = [{"count": 2, "total_ms": 150.0}]
    assert "150 ms in all — enough to be the stall." in analysis_section(results)


def test_a_heartbeat_tail_in_one_second_of_the_run_reads_as_a_stall():
    text = analysis_section(heartbeat_run([5.0, 6.0, 180.0, 5.5, 7.0]))
    assert "ranged up to 180 ms (second 3 of 5) against a median second's 6.0 ms — a stall." in text
    assert "p99 180 ms (**missed** against 50 ms)" in text


def test_an_even_heartbeat_tail_reads_as_a_spread_and_a_met_target():
    text = analysis_section(heartbeat_run([8.0, 9.0, 10.0, 9.5]))
    assert "no second stands out: a spread." in text and "(met against 50 ms)" in text


def test_the_deployed_cpu_weight_is_set_against_the_baseline_run_at_a_socket_nodes_weight():
    results = heartbeat_run([5.0, 6.0, 7.0, 5.5, 7.0])
    fast = results["heartbeat"]["fastpath"]
    fast["rest_node"]["load"]["latency_ms"]["max"] = 9.0
    even = {"load": {"latency_ms": {"p99": 120.0, "max": 164.0}}}
    fast["rest_node_even_weight"] = even
    assert "the baseline, right after" not in analysis_section(results)  # the weight did not take: no comparison
    fast["rest_node"]["cpu_weighted"] = True
    text = analysis_section(results)
    assert "(the baseline, right after): p99 120 ms, max 164 ms (at the deployed weight 7.0 ms, 9.0 ms)." in text
    per_second = {"processes": {"REST node": {"wait_ms": [40.0, 150.0, None]}}, "steal_ms": [], "late_ms": []}
    even["load"]["sched_by_second"] = per_second
    fast["rest_node"]["load"]["sched_by_second"] = {**per_second, "processes": {"REST node": {"wait_ms": [60.0, 70.0]}}}
    assert "worst second waiting for a CPU 150 ms against 70.0 ms at the deployed weight" in analysis_section(results)


def with_waits(rest_waits: list[float], generator_waits: list[float], steal: list[float] | None = None) -> dict:
    results = heartbeat_run([5.0, 6.0, 180.0, 5.5, 7.0])
    processes = {
        "REST node": {"cpu_ms": [250.0] * 5, "wait_ms": rest_waits},
        "load generator": {"cpu_ms": [90.0] * 5, "wait_ms": generator_waits},
        "socket node A": {"cpu_ms": [60.0] * 5, "wait_ms": [20.0, None, None, None, None]},  # gone after second 1
    }
    load = results["heartbeat"]["fastpath"]["rest_node"]["load"]
    load["sched_by_second"] = {"processes": processes, "steal_ms": steal or [0.0] * 5, "late_ms": [0.1] * 6}
    return results


def test_a_stalled_second_in_which_the_rest_node_waited_for_a_cpu_reads_as_its_starvation():
    text = analysis_section(with_waits([40.0, 35.0, 150.0, 45.0, 38.0], [2.0, 3.0, 4.0, 2.0, 3.0]))
    assert "(a median second's in brackets): REST node 150 (40), load generator 4 (3); the machine's steal 0 ms" in text
    assert "— supported: the REST node waited 110 ms more than in a median second." in text


def test_a_stall_the_generator_waited_out_itself_is_the_harness_not_the_server():
    text = analysis_section(with_waits([40.0, 35.0, 45.0, 45.0, 38.0], [2.0, 3.0, 160.0, 2.0, 3.0]))
    assert "supported: the generator itself waited 157 ms more than in a median second (the harness's stall," in text


def test_a_socket_node_starved_in_the_stalled_second_does_not_stand_in_for_the_rest_node():
    results = with_waits([40.0, 35.0, 60.0, 45.0, 38.0], [2.0, 3.0, 4.0, 2.0, 3.0])
    per = results["heartbeat"]["fastpath"]["rest_node"]["load"]["sched_by_second"]["processes"]
    per["socket node A"]["wait_ms"] = [20.0, 25.0, 300.0, 20.0, 22.0]  # off the heartbeat's path
    text = analysis_section(results)
    assert "socket node A 300 (22)" in text and "**not supported**" in text


def test_a_stall_nobody_waited_for_reads_as_a_pause_elsewhere_or_the_hypervisor():
    quiet = with_waits([40.0, 35.0, 60.0, 45.0, 38.0], [2.0, 3.0, 4.0, 2.0, 3.0])
    assert "**not supported**: no process waited for a CPU anywhere near as long" in analysis_section(quiet)
    stolen = with_waits([40.0, 35.0, 60.0, 45.0, 38.0], [2.0, 3.0, 4.0, 2.0, 3.0], steal=[0, 0, 120.0, 0, 0])
    assert "steal 120 ms — supported: the hypervisor ran other machines" in analysis_section(stolen)
    del quiet["heartbeat"]["fastpath"]["rest_node"]["load"]["sched_by_second"]  # an older run
    assert "Hypothesis: the stall is CPU starvation" not in analysis_section(quiet)


def test_per_second_readings_give_each_process_its_cpu_time_between_two_reads():
    import subprocess
    import sys
    import time

    from bench.cpu import PerSecond

    # The child waits for a line, burns 0.5 s of CPU (not wall time), says so, then idles.
    spin = "import sys, time\nsys.stdin.readline()\nt = time.process_time()\n"
    spin += "while time.process_time() - t < 0.5: pass\nprint('spent', flush=True)\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seconds = PerSecond({"child": child.pid, "gone": 2**22 + 1}, time.monotonic())
    try:
        seconds.read()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "spent"
        seconds.read()
        time.sleep(0.2)
        seconds.read()
    finally:
        child.kill()
        child.wait()
    result = seconds.result()
    busy, idle = result["processes"]["child"]["cpu_ms"]
    assert 480 <= busy <= 700 and idle <= 20
    assert result["processes"]["gone"] == {"cpu_ms": [None, None], "wait_ms": [None, None]}  # no such process
    assert len(result["steal_ms"]) == 2 and all(v >= 0 for v in result["steal_ms"])


def test_per_second_readings_are_taken_at_each_whole_second_of_the_run():
    import asyncio
    import os
    import time

    from bench.cpu import PerSecond

    seconds = PerSecond({"me": os.getpid()}, time.monotonic())
    asyncio.run(seconds.run(2))
    assert len(seconds.reads) == 3 and len(seconds.late_ms) == 3
    assert len(seconds.result()["processes"]["me"]["wait_ms"]) == 2


def with_cpu(mean_ms: float, total_ms: float, cpus: int = 2) -> dict:
    results = run([0.1] * 20, collections=[0, 0])
    hub = results["fanout"]["hub"]["5000"]
    hub["all"]["latency_ms"]["mean"] = mean_ms
    hub["cpu_per_change"] = {
        "net_ms": {"node A": total_ms / 2, "harness": total_ms / 2},
        "total_ms": total_ms,
        "idle_ms": {"node A": 0.5, "harness": 0.1},
        "wall_s": 6.0,
        "cpus": cpus,
    }
    return results


def test_a_change_that_takes_its_cpu_spread_over_the_cpus_reads_as_cpu_bound():
    text = analysis_section(with_cpu(mean_ms=36.0, total_ms=60.0))
    assert "node A 30.0 ms, harness 30.0 ms; 60.0 ms in all" in text
    assert "spread over the machine's 2 CPUs (30.0 ms). This run: mean 36.0 ms, 1.2x that floor." in text
    assert "Verdict: consistent" in text


def test_a_change_far_slower_than_its_cpu_reads_as_waiting_not_computing():
    text = analysis_section(with_cpu(mean_ms=90.0, total_ms=60.0))
    assert "Verdict: not CPU-bound: about 60.0 ms of a change is waiting" in text


def test_a_run_without_cpu_figures_says_nothing_about_them():
    assert "CPU per change" not in analysis_section(run([0.1] * 20, collections=[0, 0]))


def test_the_cpu_window_counts_a_busy_child_and_takes_the_idle_window_off():
    import subprocess
    import sys
    import time

    from bench.cpu import CpuWindow

    # The child burns 0.8 s of CPU (not of wall time: a loaded machine only makes it slower), says so, then idles.
    spin = "import time\nwhile time.process_time() < 0.8: pass\nprint('spent', flush=True)\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
    try:
        busy = CpuWindow({"child": child.pid})
        busy.start()  # the child's start-up may fall before or in the window
        assert child.stdout.readline().strip() == "spent"
        busy.stop()
        idle = busy.idle_like()
        idle.start()
        time.sleep(0.3)
        idle.stop()
    finally:
        child.kill()
        child.wait()
    per = busy.per_change(2, idle)
    assert 250 <= per["net_ms"]["child"] <= 480  # ~800 ms less what it spent before the window, over 2 changes
    assert per["idle_ms"]["child"] <= 20
    assert per["cpus"]


def test_a_target_measured_on_both_socket_servers_gives_each_its_verdict():
    from bench.report import _ok, _ok_min, _on_both

    servers = ("Daphne", "Uvicorn")
    assert _on_both(servers, (72.0, 45.2), " ms", _ok, 100) == ["72.0 ms on Daphne · 45.2 ms on Uvicorn", "met"]
    assert _on_both(servers, (18.3, 26.1), "x", _ok_min, 20) == [
        "18.3x on Daphne · 26.1x on Uvicorn",
        "**missed** on Daphne; met on Uvicorn",
    ]
    assert _on_both(servers, (36.8, None), " KiB", _ok, 40) == ["36.8 KiB", "met"]  # a run without the phase


def test_the_server_reading_says_whether_uvicorn_was_faster_everywhere():
    results = run([0.1] * 20, collections=[0, 0])
    hub = results["fanout"]["hub"]["5000"]
    faster = {**hub, "all": {**hub["all"], "latency_ms": {"p50": 80.0, "p99": 90.0}}}
    slower_tail = {**hub, "all": {**hub["all"], "latency_ms": {"p50": 80.0, "p99": 900.0}}}
    results["memory"] = {"kib_per_connection": 36.8}
    results["uvicorn"] = {
        "baseline_server": "daphne",
        "fanout": {"5000": faster},
        "memory": {"kib_per_connection": 43.0},
    }
    assert "Uvicorn was faster at both sizes, p50 and p99, and as correct" in analysis_section(results)
    assert "an idle socket held 43.0 KiB on Uvicorn against 36.8 KiB" in analysis_section(results)
    results["uvicorn"]["fanout"]["5000"] = slower_tail
    assert "Uvicorn was not faster everywhere" in analysis_section(results)


def test_a_rest_nodes_cpu_weight_is_its_sessions_autogroup_nice_where_the_kernel_has_autogroups():
    import os
    import subprocess
    import sys
    from pathlib import Path

    from bench.cluster import REST_NICE, cpu_weight

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
        took = cpu_weight(child.pid, REST_NICE)
        assert took == (enabled and os.geteuid() == 0)  # a negative nice needs root (CAP_SYS_NICE)
        if took:
            assert Path(f"/proc/{child.pid}/autogroup").read_text().split()[-1] == str(REST_NICE)
            # Its own session's group, not the caller's. The caller may sit in init's default group, whose
            # autogroup file is empty (the kernel prints nothing for the root task group): compare whole lines.
            mine = Path("/proc/self/autogroup").read_text()
            assert mine != Path(f"/proc/{child.pid}/autogroup").read_text()
            assert not mine or mine.split()[-1] == "0"
            assert cpu_weight(child.pid, 0)
    finally:
        child.kill()
        child.wait()
    assert not cpu_weight(child.pid, REST_NICE)  # gone


def test_the_relay_target_sets_the_hub_on_each_socket_server_against_the_same_relay_run():
    from bench.report import rabbit_targets

    def at(p50: float, p99: float) -> dict:
        return {"all": {"latency_ms": {"p50": p50, "p99": p99}}}

    fan = {"hub": {"1000": at(33.5, 61.1)}, "rabbitmq": {"1000": {"n": 1000, **at(52.6, 58.5)}}}
    alone = rabbit_targets(fan)[0]
    assert alone[2] == "p50 33.5 ms vs 52.6 ms (1.6x), p99 61.1 ms vs 58.5 ms (1.0x)" and alone[3] == "**missed**"
    both = rabbit_targets(fan, {"fanout": {"1000": at(27.4, 37.1)}}, ("Daphne", "Uvicorn"))[0]
    assert both[2].startswith("on Daphne: p50 33.5 ms vs 52.6 ms") and "; on Uvicorn: p50 27.4 ms vs 52.6 ms" in both[2]
    assert both[3] == "**missed** on Daphne; met on Uvicorn"
    fan["hub"]["1000"] = at(30.0, 50.0)
    assert rabbit_targets(fan, {"fanout": {"1000": at(27.4, 37.1)}})[0][3] == "met"


def test_a_cluster_without_a_rest_node_does_not_claim_a_weighted_one():
    from bench.cluster import REST_NICE, Cluster

    bare = Cluster(name="sockets only", ports=[], nodes=[])
    assert bare.rest_weight(REST_NICE) is False and bare.rest_weighted is False
