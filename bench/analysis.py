"""RESULTS.md's "What the numbers say": every sentence computed from this run's numbers.

Where a reading is an interpretation rather than a measurement, it is written
as a hypothesis beside the figure of this run that tests it, and the verdict
is computed: a run that contradicts it says so.
"""

import statistics

from bench.stats import ratio
from bench.values import fmt, get


def _ms(value) -> str:
    return fmt(value, " ms")


def analysis_section(results: dict) -> str:
    fan = results.get("fanout", {})
    bullets = [_fanout(fan, n) for n in ("1000", "5000")]
    bullets += [_gc_hypothesis(fan, n) for n in ("1000", "5000")]
    bullets += [_cpu(fan, n) for n in ("1000", "5000")]
    bullets += [_per_frame(fan), _speedup(fan), _relay(fan, results.get("uvicorn", {}))]
    bullets.append(_heartbeat(results.get("heartbeat", {})))
    bullets.append(_servers(results))
    bullets.append(_naive_losses(fan))
    text = "".join(f"* {b}\n" for b in bullets if b)
    return "## What the numbers say\n\n" + (text or "Nothing measured in this run to read.\n")


def _usable(r) -> bool:
    return isinstance(r, dict) and not r.get("error") and "all" in r


def _fanout(fan: dict, n: str) -> str:
    r = get(fan, "hub", n)
    if not _usable(r):
        return ""
    lat = r["all"]["latency_ms"]
    nodes = ", ".join(_ms(v) for v in r.get("node_fanout_mean_ms") or []) or "-"
    request = get(r, "cancel", "request_ms", "p50")
    return (
        f"**Fan-out, N = {int(n):,}**: p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])} over {r['all']['changes']} "
        f"changes moving {r['all']['affected_mean']:.0f} clients each on average; {r['all']['missing']} missing, "
        f"{r['audit']['wrong'] + r['audit']['missing']} wrong at the end. Of the end-to-end time, the cancel's "
        f"HTTP request took p50 {_ms(request)} and the nodes' own broadcast-to-last-push averaged {nodes}."
    )


def _slow_changes(r: dict) -> tuple[list[dict], float | None]:
    done = [c for c in r.get("changes_raw", []) if c.get("latency") is not None]
    if not done:
        return [], None
    median = sorted(c["latency"] for c in done)[len(done) // 2]
    return [c for c in done if c["latency"] > 2 * median], median


def _gc_hypothesis(fan: dict, n: str) -> str:
    r = get(fan, "hub", n)
    if not _usable(r):
        return ""
    slow, median = _slow_changes(r)
    gcs = r.get("node_full_collections") or []
    if median is None or not gcs:
        return ""
    full = sum(g["count"] for g in gcs)
    paused = sum(g["total_ms"] for g in gcs)
    cycles = sum(n for g in gcs for reason, n in (g.get("freezes") or {}).items() if reason in ("leak", "age"))
    listed = ", ".join(f"{c['latency'] * 1000:.0f} ms" for c in slow) or "none"
    if not slow:
        verdict = "nothing to explain: no change took over twice the median"
    elif full == 0:
        verdict = "**not supported**: no full collection ran on either node, so the slow changes have another cause"
    elif full >= len(slow):
        verdict = "consistent: there were at least as many full collections as slow changes"
    else:
        verdict = f"**partly**: {len(slow) - full} slow change(s) more than full collections"
    return (
        f"**Hypothesis, N = {int(n):,}: the slowest changes wait out a full garbage collection on a node.** "
        f"Changes over twice the median ({median * 1000:.0f} ms): {listed}. Full collections on the nodes meanwhile "
        f'(`hearo_gc_pause_seconds{{generation="2"}}`): {full}, {paused:.0f} ms in all'
        + (f", {cycles} of them the freeze policy's unfreeze cycles (the whole heap)" if cycles else "")
        + f". Verdict: {verdict}."
        + _harness_gc(r)
    )


def _harness_gc(r: dict) -> str:
    """Say how often the load generator itself collected in the window (its heap frozen first)."""
    harness = r.get("harness_full_collections")
    if harness is None:
        return ""
    return (
        f" The harness's own full collections in the window (its heap frozen before it, `bench/harness_gc.py`): "
        f"{harness['count']}, {harness['total_ms']:.0f} ms in all."
    )


def _per_frame(fan: dict) -> str:
    parts = []
    for n in ("1000", "5000"):
        r = get(fan, "hub", n)
        nodes = (r or {}).get("node_fanout_mean_ms") if _usable(r) else None
        if not nodes:
            continue
        per_node = r["all"]["affected_mean"] / len(nodes)
        if per_node:
            parts.append(
                f"N = {int(n):,}: {sum(nodes) / len(nodes) * 1000 / per_node:.0f} µs per moved client "
                f"({per_node:.0f} per node)"
            )
    if len(parts) < 1:
        return ""
    return (
        "**A node's cost per pushed frame** (its broadcast-to-last-push time over the clients it moved): "
        + "; ".join(parts)
        + ". If the cost is per frame, these agree across N; a larger figure at the larger N is time the node spent "
        "on something else meanwhile (collections, other sockets, waiting for a CPU)."
    )


# Within this band of the CPU-bound floor, a change's time is read as set by the CPUs.
CPU_BOUND_BAND = (0.8, 1.5)


def _cpu(fan: dict, n: str) -> str:
    r = get(fan, "hub", n)
    cpu = (r or {}).get("cpu_per_change") if _usable(r) else None
    mean = get(r, "all", "latency_ms", "mean")
    if not cpu or not cpu.get("net_ms") or mean is None:
        return ""
    cpus = cpu.get("cpus") or 1
    spent = ", ".join(f"{label} {fmt(ms, ' ms')}" for label, ms in cpu["net_ms"].items())
    floor = cpu["total_ms"] / cpus
    rate = mean / floor if floor else None
    low, high = CPU_BOUND_BAND
    if rate is None:
        verdict = "no CPU time was measured"
    elif rate < low:
        verdict = "contradicted: changes ended sooner than their CPU could be spread (not all of it was theirs)"
    elif rate <= high:
        verdict = (
            "consistent: the CPUs, not waiting, set the pace, so less CPU per change in any process "
            "(the harness's included) shortens it"
        )
    else:
        verdict = f"not CPU-bound: about {_ms(mean - floor)} of a change is waiting, not computing"
    return (
        f"**CPU per change, N = {int(n):,}** (user + system time of each process over the measured changes, less "
        f"what it spent in an idle window as long): {spent}; {fmt(cpu['total_ms'], ' ms')} in all (the harness is "
        f"its {int(n):,} clients reading their frames). Hypothesis: a change is CPU-bound, its end-to-end time about "
        f"its CPU spread over the machine's {cpus} CPUs ({_ms(floor)}). This run: mean {_ms(mean)}, "
        f"{fmt(rate and round(rate, 2), 'x')} that floor. Verdict: {verdict}."
    )


def _speedup(fan: dict) -> str:
    hub = get(fan, "hub", "1000", "all", "latency_ms", "p50")
    naive = get(fan, "naive_cap100k", "1000", "all", "latency_ms", "p50")
    if hub is None or naive is None:
        return ""
    request = get(fan, "hub", "1000", "cancel", "request_ms", "p50")
    needed = naive / 20
    cpu_hub = get(fan, "hub", "1000", "cpu_per_change", "total_ms")
    cpu_naive = get(fan, "naive_cap100k", "1000", "cpu_per_change", "total_ms")
    cpu = ""
    if cpu_hub and cpu_naive:
        times = fmt(ratio(cpu_naive, cpu_hub), "x")
        cpu = f" CPU per change, every process: hub {_ms(cpu_hub)}, naive {_ms(cpu_naive)} ({times})."
    return (
        f"**Speed-up over the naive design at N = 1,000**: naive p50 {_ms(naive)} ÷ hub p50 {_ms(hub)} = "
        f"{fmt(ratio(naive, hub), 'x')}. 20x needs the hub at or under {_ms(needed)} in this run; the cancel's own "
        f"request (p50 {_ms(request)}) is part of both.{cpu}"
    )


def _servers(results: dict) -> str:
    """Daphne against Uvicorn socket nodes: faster at both N and both percentiles, and as correct?"""
    uv = results.get("uvicorn") or {}
    base = uv.get("baseline_server", "daphne").capitalize()
    parts, faster_everywhere = [], True
    for n in ("1000", "5000"):
        mine, theirs = get(uv, "fanout", n), get(results, "fanout", "hub", n)
        if not (_usable(mine) and _usable(theirs)):
            continue
        a, b = theirs["all"]["latency_ms"], mine["all"]["latency_ms"]
        faults = [r["all"]["missing"] + r["audit"]["wrong"] + r["audit"]["missing"] for r in (theirs, mine)]
        faster = b["p50"] < a["p50"] and b["p99"] < a["p99"] and faults[1] <= faults[0]
        faster_everywhere &= faster
        parts.append(
            f"N = {int(n):,}: {_ms(b['p50'])} / {_ms(b['p99'])} against {_ms(a['p50'])} / {_ms(a['p99'])} "
            f"(missing + wrong {faults[1]} against {faults[0]})"
        )
    if not parts:
        return ""
    naive = get(uv, "naive_cap100k", "1000", "all", "latency_ms", "p50")
    speedup = ratio(naive, get(uv, "fanout", "1000", "all", "latency_ms", "p50"))
    memory = (get(uv, "memory", "kib_per_connection"), get(results, "memory", "kib_per_connection"))
    verdict = "faster at both sizes, p50 and p99, and as correct" if faster_everywhere else "not faster everywhere"
    naive_part = ""
    if naive is not None:
        naive_part = (
            f" the naive design on Uvicorn nodes took p50 {_ms(naive)} at N = 1,000 ({fmt(speedup, 'x')} the hub);"
        )
    return (
        f"**Socket nodes on Uvicorn against {base}** (p50 / p99): " + "; ".join(parts) + f". In this run Uvicorn "
        f"was {verdict};{naive_part} an idle socket held {fmt(memory[0], ' KiB')} on Uvicorn against "
        f"{fmt(memory[1], ' KiB')}."
    )


def _relay(fan: dict, uv: dict) -> str:
    out = []
    for n in ("1000", "5000"):
        hub, relay = get(fan, "hub", n, "all", "latency_ms"), get(fan, "rabbitmq", n, "all", "latency_ms")
        reached = get(fan, "rabbitmq", n, "n")
        if not hub or not relay:
            continue
        if reached != int(n):  # capped below N (an older run): not the same N, no verdict
            out.append(f"N = {int(n):,}: the relay reached only {reached} clients, not comparable")
            continue
        ahead = hub["p50"] < relay["p50"] and hub["p99"] < relay["p99"]
        text = (
            f"N = {int(n):,}: hub {_ms(hub['p50'])} / {_ms(hub['p99'])}, relay {_ms(relay['p50'])} / "
            f"{_ms(relay['p99'])} (p50 / p99): the hub is {'ahead on both' if ahead else '**not ahead on both**'}"
        )
        other = get(uv, "fanout", n, "all", "latency_ms")
        if not ahead and other and other["p50"] is not None and other["p99"] is not None:
            on_uvicorn = other["p50"] < relay["p50"] and other["p99"] < relay["p99"]
            text += f" (the same hub with its socket nodes on Uvicorn: {_ms(other['p50'])} / {_ms(other['p99'])}, " + (
                "ahead on both: the socket server made the difference; its per-frame work is under Profiles)"
                if on_uvicorn
                else "not ahead on both either)"
            )
        out.append(text)
    if not out:
        return ""
    return "**Hub vs the RabbitMQ Web-STOMP relay at equal N**: " + "; ".join(out) + "."


def _heartbeat(hb: dict) -> str:
    rest = get(hb, "fastpath", "rest_node")
    if not rest or not get(rest, "load", "latency_ms"):
        return ""
    lat = rest["load"]["latency_ms"]
    sockets = get(hb, "fastpath", "main", "load", "latency_ms", "p99")
    waits = get(rest, "sched") or {}
    waited = get(waits, "REST node", "runqueue_wait_ms")
    cpu = get(waits, "REST node", "cpu_ms")
    verdict = "met" if lat["p99"] < 50 else "**missed**"
    text = (
        f"**Heartbeat at {rest['load'].get('target_rate', rest.get('rate'))}/s during fan-out**: the REST node "
        f"answered p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])} ({verdict} against 50 ms); sent to the socket "
        f"nodes instead, p99 {_ms(sockets)}."
    )
    by_second = rest["load"].get("p99_ms_by_second") or []
    seconds = [v for v in by_second if v is not None]
    if len(seconds) >= 3:
        worst = max(seconds)
        typical = sorted(seconds)[len(seconds) // 2]
        stalled = worst > 3 * typical
        text += (
            f" Hypothesis: the tail is a stall in a few seconds of the run (a pause), not a spread over all of it. "
            f"This run: the p99 of each second ranged up to {_ms(worst)} (second {by_second.index(worst) + 1} of "
            f"{len(by_second)}) against a median second's {_ms(typical)}"
            + (" — a stall." if stalled else " — no second stands out: a spread.")
        )
        gcs = rest.get("node_full_collections")
        if stalled and gcs is not None:
            full, paused = sum(g["count"] for g in gcs), sum(g["total_ms"] for g in gcs)
            text += f" Full collections on the REST node in the window: {full}, {paused:.0f} ms in all" + (
                " — not the stall's cause." if paused < worst / 2 else " — enough to be the stall."
            )
        slowest = get(rest, "fanout_during", "request_ms", "max")
        if stalled and slowest is not None:
            text += f" The slowest cancel request sent to it meanwhile took {_ms(slowest)}."
        socket_gcs = rest.get("socket_node_full_collections")
        if stalled and socket_gcs is not None:
            full, paused = sum(g["count"] for g in socket_gcs), sum(g["total_ms"] for g in socket_gcs)
            text += f" The socket nodes' full collections in the window: {full}, {paused:.0f} ms in all."
        if stalled:
            text += _stall_waits(rest["load"], by_second.index(worst), worst)
    if waited is not None and cpu is not None:
        text += (
            f" The REST node was runnable but waiting for a CPU for {_ms(waited)} of the run, on one for "
            f"{_ms(cpu)} (kernel schedstat)."
        )
    even = get(hb, "fastpath", "rest_node_even_weight")
    if rest.get("cpu_weighted") and get(even, "load", "latency_ms", "p99") is not None:
        worse = even["load"]["latency_ms"]
        text += (
            f" At a socket node's CPU weight instead (the baseline, right after): p99 {_ms(worse['p99'])}, max "
            f"{_ms(worse['max'])} (at the deployed weight {_ms(lat['p99'])}, {_ms(lat['max'])})"
        )
        peaks = [_worst_wait(run) for run in (even, rest)]
        if None not in peaks:
            text += (
                f"; the REST node's worst second waiting for a CPU {_ms(peaks[0])} against {_ms(peaks[1])} at the "
                "deployed weight (the total over the run moves less: the weight decides *when* it waits)"
            )
        text += "."
    return text


def _worst_wait(run: dict) -> float | None:
    """The REST node's longest wait for a CPU in any one second of a run (None: not measured)."""
    waits = get(run, "load", "sched_by_second", "processes", "REST node", "wait_ms")
    return max((w for w in waits if w is not None), default=None) if waits else None


def _stall_waits(load: dict, second: int, worst: float) -> str:
    """Who waited for a CPU in the stalled second, against a median second: starvation, and whose, or none."""
    per = load.get("sched_by_second")
    if not per:
        return ""  # an older run: not measured
    excess, parts = {}, []
    for label, series in per["processes"].items():
        waits = series["wait_ms"]
        that = waits[second] if second < len(waits) else None
        if that is None:
            continue  # gone by then
        median = statistics.median_high([w for w in waits if w is not None])
        excess[label] = that - median
        parts.append(f"{label} {that:.0f} ({median:.0f})")
    steal = per["steal_ms"][second] if second < len(per["steal_ms"]) else 0.0
    text = (
        " Hypothesis: the stall is CPU starvation on this shared box. Time each process spent runnable but "
        f"waiting for a CPU in that second, ms (a median second's in brackets): {', '.join(parts)}; the "
        f"machine's steal {steal:.0f} ms"
    )
    # Only two processes are on a heartbeat's path: the node answering it and the generator timing it.
    for starved, who in (("REST node", "the REST node"), ("load generator", "the generator itself")):
        if excess.get(starved, 0.0) >= worst / 2:
            whose = " (the harness's stall, not the server's)" if starved == "load generator" else ""
            return text + f" — supported: {who} waited {excess[starved]:.0f} ms more than in a median second{whose}."
    if steal >= worst / 2:
        return text + " — supported: the hypervisor ran other machines on these CPUs."
    return text + (
        " — **not supported**: no process waited for a CPU anywhere near as long as the stall; it was a pause "
        "elsewhere (a lock, Redis, PostgreSQL, the network)."
    )


def _naive_losses(fan: dict) -> str:
    lost = {n: get(fan, "naive_cap100", n, "all", "missing") for n in ("1000", "5000")}
    lost = {n: v for n, v in lost.items() if v is not None}
    if not lost:
        return ""
    listed = ", ".join(f"{v} at N = {int(n):,}" for n, v in lost.items())
    return f"**Naive design at channels-redis's default capacity (100)**: clients that never got their rank: {listed}."
