"""Render results.json as RESULTS.md: the command, the machine, per-scenario tables, targets."""

from bench.stats import percentile, ratio

DESIGNS = (
    ("hub", "HearO hub (1 broadcast per change)"),
    ("naive_cap100", "naive, channels-redis default capacity 100"),
    ("naive_cap100k", "naive, capacity 100,000"),
    ("rabbitmq", "RabbitMQ Web-STOMP relay (1 SEND per customer)"),
)


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value}{unit}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def get(node: dict, *path, default=None):
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def error_of(node) -> str | None:
    return node.get("error") if isinstance(node, dict) else None


# -- sections ----------------------------------------------------------------------------


def header(meta: dict) -> str:
    pk = meta["packages"]
    rows = [
        ["command", f"`{meta['command']}` (runs `.venv/bin/python -m bench.run`; `--quick` for a smoke run)"],
        ["date (UTC) / wall time", f"{meta['date']} / {meta.get('duration_s', '?')} s"],
        ["machine", f"{meta['nproc']} vCPU ({meta['cpu_model']}), {meta['memory_gib']} GiB, Linux {meta['kernel']}"],
        ["load average start → end", f"{_load(meta['load_average_start'])} → {_load(meta.get('load_average_end'))}"],
        ["Python / Django / Channels", f"{meta['python']} / {pk['Django']} / {pk['channels']}"],
        [
            "channels-redis / redis-py / Daphne / Twisted",
            f"{pk['channels-redis']} / {pk['redis']} / {pk['daphne']} / {pk['Twisted']}",
        ],
        ["Celery / psycopg / websockets", f"{pk['celery']} / {pk['psycopg']} / {pk['websockets']}"],
        [
            "Redis (private instance) / PostgreSQL / RabbitMQ",
            f"{meta['redis_server'].split(' sha')[0]} / {meta['postgresql']} / {meta['rabbitmq']}",
        ],
        ["tree", meta["git_commit"]],
    ]
    mode = " (**--quick smoke run: small N, short runs; not the issue's numbers**)" if meta.get("quick") else ""
    return f"# HearO benchmarks (issue #7){mode}\n\n" + table(["", ""], rows)


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def fanout_section(results: dict) -> str:
    fan = results.get("fanout", {})
    sizes = sorted({int(n) for d in fan.values() for n in d}, key=int)
    out = ["## 1. Rank fan-out\n", FANOUT_METHOD]
    for n in sizes:
        hub_p50 = get(fan, "hub", str(n), "all", "latency_ms", "p50")
        rows = [
            _fanout_row(_capped(label, fan.get(key, {}).get(str(n))), fan.get(key, {}).get(str(n)), hub_p50)
            for key, label in DESIGNS
        ]
        out.append(f"\n### N = {n:,}\n\n")
        out.append(table(FANOUT_HEADER, rows))
        out.append(_split_rows(fan, n))
        out.append(_redis_rows(fan, n))
        out.append(_node_times(fan, n))
    out.append(lines_section(fan))
    poll = results.get("polling")
    if poll and not error_of(poll):
        load, st = poll["load"], poll["staleness"]
        out.append(f"\n### REST polling every {poll['poll_seconds']:.0f} s (N = {poll['n']:,})\n\n")
        out.append(
            table(
                ["staleness mean", "staleness p99", "request load", "achieved", "request p50", "request p99", "errors"],
                [
                    [
                        f"{st['mean_ms'] / 1000:.2f} s (analytical)",
                        f"{st['p99_ms'] / 1000:.2f} s (analytical)",
                        f"{load['target_rate']:.0f} req/s",
                        f"{load['achieved_rate']:.0f} req/s",
                        fmt(load["latency_ms"]["p50"], " ms"),
                        fmt(load["latency_ms"]["p99"], " ms"),
                        str(
                            load["errors"]
                            + load["unfinished"]
                            + sum(v for k, v in load["statuses"].items() if k != "200")
                        ),
                    ]
                ],
            )
        )
    elif poll:
        out.append(f"\nREST polling: **failed**: {error_of(poll)}\n")
    return "".join(out)


FANOUT_HEADER = [
    "design",
    "changes (complete)",
    "p50",
    "p99",
    "max",
    "missing",
    "wrong (final)",
    "p50 ÷ hub p50",
    "clients affected / change",
]


def _capped(label: str, r: dict | None) -> str:
    if r and r.get("n_wanted") and r["n"] != r["n_wanted"]:
        return f"{label} **at N = {r['n']:,}** (broker open-files limit {r['broker_open_files_limit']})"
    return label


def _fanout_row(label: str, r: dict | None, hub_p50) -> list:
    if r is None:
        return [label, "not run", *["-"] * 7]
    if error_of(r):
        return [label, f"failed: {error_of(r)[:80]}", *["-"] * 7]
    lat, audit = r["all"]["latency_ms"], r["audit"]
    return [
        label,
        f"{r['all']['changes']} ({r['all']['complete']})",
        fmt(lat["p50"], " ms"),
        fmt(lat["p99"], " ms"),
        fmt(lat["max"], " ms"),
        r["all"]["missing"],
        audit["wrong"] + audit["missing"],
        fmt(ratio(lat["p50"], hub_p50), "x"),
        r["all"]["affected_mean"],
    ]


def _split_rows(fan: dict, n: int) -> str:
    rows = []
    for key, label in DESIGNS:
        r = fan.get(key, {}).get(str(n))
        if not r or error_of(r):
            continue
        for kind in ("cancel", "burst"):
            k = r[kind]
            if k["changes"]:
                rows.append(
                    [
                        label,
                        kind,
                        k["changes"],
                        fmt(k["latency_ms"]["p50"], " ms"),
                        fmt(k["latency_ms"]["p99"], " ms"),
                        k["affected_mean"],
                        fmt(k["request_ms"]["p50"], " ms"),
                    ]
                )
    head = ["design", "change", "n", "p50", "p99", "affected", "request/publish p50"]
    return (
        "\nBy kind of change (request = the cancel's HTTP round trip, the burst's transaction, "
        "or RabbitMQ's N publishes):\n\n" + table(head, rows)
    )


def _redis_rows(fan: dict, n: int) -> str:
    rows = []
    for key, label in DESIGNS[:3]:
        r = get(fan, key, str(n), "redis")
        if not r:
            continue
        for kind in ("cancel", "burst"):
            c = r[kind]
            top, lua = c["top_level"], c["in_scripts"]
            rows.append(
                [
                    label,
                    kind,
                    top.get("broadcast", 0),
                    top.get("channel_layer", 0),
                    lua.get("channel_layer", 0),
                    c["messages"],
                    top.get("cache", 0),
                    top.get("celery", 0),
                    sum(top.values()),
                ]
            )
    head = [
        "design",
        "change",
        "queue broadcast (PUBLISH)",
        "channel-layer cmds",
        "+ inside Lua",
        "messages (ZADD + PUBLISH)",
        "cache cmds",
        "Celery cmds",
        "all top-level cmds",
    ]
    return (
        "\nRedis per change (MONITOR on the private Redis, one quiet change minus an idle window as long):\n\n"
        + table(head, rows)
    )


def _node_times(fan: dict, n: int) -> str:
    r = get(fan, "hub", str(n))
    if not r or error_of(r) or not r.get("node_fanout_mean_ms"):
        return ""
    a, b = r["node_fanout_mean_ms"]
    return (
        f"\nServer side (the nodes' `hearo_fanout_seconds`: broadcast received → last frame handed to the "
        f"socket), mean per change: node A {fmt(a, ' ms')}, node B {fmt(b, ' ms')}. Connecting and "
        f"subscribing all {n:,} clients took {r['connect_s']} s.\n"
    )


def lines_section(fan: dict) -> str:
    """3 queues x 2 languages beside one queue at the same N, in the same cluster (issue #13)."""
    out = []
    for n in sorted(fan.get("hub_lines", {}), key=int):
        one, six = fan.get("hub", {}).get(n), fan["hub_lines"][n]
        out.append(f"\n### 3 queues x 2 languages beside one queue (hub, N = {int(n):,})\n\n{LINES_METHOD}")
        if error_of(six):
            out.append(f"3 queues x 2 languages: **failed**: {error_of(six)}\n")
            continue
        rows = [_lines_row("one queue, one language", one, one), _lines_row("3 queues x 2 languages", six, one)]
        out.append(table(LINES_HEADER, rows))
        kinds = [
            [label, kind, *_kind_cells(r, kind)]
            for label, r in (("one queue", one), ("3 x 2", six))
            if r and not error_of(r)
            for kind in ("cancel", "burst")
        ]
        out.append("\nBy kind of change:\n\n" + table(["lines", "change", "n", "p50", "p99", "affected"], kinds))
        spread = six.get("lines_per_burst") or []
        per_line = ", ".join(f"{line} {count:,}" for line, count in six.get("lines", {}).items())
        out.append(
            f"\nClients left per line at the end: {per_line}. Lines a burst touched: {_span(sorted(spread))}. "
            f"Connecting all {int(n):,} clients took {six['connect_s']} s.\n"
        )
    return "".join(out)


LINES_HEADER = [
    "lines",
    "changes (complete)",
    "p50",
    "p99",
    "max",
    "missing",
    "wrong (final)",
    "clients affected / change",
    "PUBLISH per cancel / burst",
    "p50 ÷ one queue",
    "p99 ÷ one queue",
]


def _lines_row(label: str, r: dict | None, one: dict | None) -> list:
    if r is None:
        return [label, "not run", *["-"] * 9]
    if error_of(r):
        return [label, f"failed: {error_of(r)[:80]}", *["-"] * 9]
    lat = r["all"]["latency_ms"]
    base = get(one, "all", "latency_ms", default={}) if one and not error_of(one) else {}
    publishes = [get(r, "redis", kind, "top_level", "broadcast") for kind in ("cancel", "burst")]
    return [
        label,
        f"{r['all']['changes']} ({r['all']['complete']})",
        fmt(lat["p50"], " ms"),
        fmt(lat["p99"], " ms"),
        fmt(lat["max"], " ms"),
        r["all"]["missing"],
        r["audit"]["wrong"] + r["audit"]["missing"],
        r["all"]["affected_mean"],
        " / ".join(fmt(p) for p in publishes),
        fmt(ratio(lat["p50"], base.get("p50")), "x"),
        fmt(ratio(lat["p99"], base.get("p99")), "x"),
    ]


def _kind_cells(r: dict, kind: str) -> list:
    k = r[kind]
    return [k["changes"], fmt(k["latency_ms"]["p50"], " ms"), fmt(k["latency_ms"]["p99"], " ms"), k["affected_mean"]]


def match_section(results: dict) -> str:
    m = results.get("match", {})
    rows = []
    for key, label in (("event_driven", "event-driven (worker + beat)"), ("beat_only", "beat only (5 s)")):
        r = m.get(key)
        if r is None or error_of(r):
            rows.append([label, f"failed: {error_of(r)}" if r else "not run", "-", "-", "-", "-"])
            continue
        lat = r["latency_ms"]
        rows.append(
            [
                label,
                f"{r['samples']} ({r['timeouts']} timed out)",
                fmt(lat["p50"], " ms"),
                fmt(lat["p99"], " ms"),
                fmt(lat["max"], " ms"),
                fmt(lat["mean"], " ms"),
            ]
        )
    ev, bt = get(m, "event_driven", "latency_ms", "p50"), get(m, "beat_only", "latency_ms", "p50")
    return (
        "## 2. Match latency\n\n"
        + MATCH_METHOD
        + table(["mode", "samples", "p50", "p99", "max", "mean"], rows)
        + f"\nBeat-only p50 ÷ event-driven p50: {fmt(ratio(bt, ev), 'x')}.\n"
    )


def heartbeat_section(results: dict) -> str:
    hb = results.get("heartbeat", {})
    out = ["## 3. Heartbeat load (`POST /api/queue/heartbeat`, open loop, fan-out running)\n\n", HEARTBEAT_METHOD]
    rows = []
    fast = hb.get("fastpath", {})
    if error_of(fast):
        out.append(f"Fast path: **failed**: {error_of(fast)}\n")
    for label, run in (
        ("fast path, REST node (no sockets; as deployed)", fast.get("rest_node")),
        ("fast path, both socket nodes", fast.get("main")),
        ("fast path, socket node A only", fast.get("single_node")),
    ):
        if run:
            rows.append(_hb_row(label, run))
    django = hb.get("django_view", {})
    if error_of(django):
        out.append(f"Django view: **failed**: {error_of(django)}\n")
    for run in django.get("runs", []):
        rows.append(_hb_row("Django view (HEARO_HEARTBEAT_FASTPATH=0), both nodes", run))
    out.append(table(HB_HEADER, rows))
    sched = [
        [label, process, *_sched_cells(numbers)]
        for label, run in (("REST node", fast.get("rest_node")), ("both socket nodes", fast.get("main")))
        for process, numbers in ((run or {}).get("sched") or {}).items()
    ]
    if sched:
        out.append(
            "\nWhere the processes' time went during those two 500/s runs (`/proc/{pid}/task/*/schedstat`: time on a "
            "CPU, and time *ready to run but waiting for a CPU* because both vCPUs were busy elsewhere):\n\n"
        )
        header = ["beats sent to", "process", "on CPU", "waiting for a CPU", "timeslices", "wait / slice"]
        out.append(table(header, sched))
    knee = [_hb_row("REST node", run) for run in fast.get("rest_knee", [])]
    knee += [_hb_row("both socket nodes", run) for run in fast.get("knee", [])]
    if knee:
        out.append("\nKnee of the curve (fast path, fan-out running):\n\n")
        out.append(table(HB_HEADER, knee))
    return "".join(out)


HB_HEADER = [
    "server",
    "target",
    "achieved",
    "p50",
    "p99",
    "max",
    "non-2xx / unfinished",
    "generator lag p99",
    "fan-out p50 / p99 meanwhile",
]


def _hb_row(label: str, run: dict) -> list:
    load, fan = run["load"], run["fanout_during"]
    bad = sum(v for k, v in load["statuses"].items() if not k.startswith("2"))
    return [
        label,
        f"{load['target_rate']:.0f}/s",
        f"{load['achieved_rate']:.0f}/s",
        fmt(load["latency_ms"]["p50"], " ms"),
        fmt(load["latency_ms"]["p99"], " ms"),
        fmt(load["latency_ms"]["max"], " ms"),
        f"{bad} / {load['unfinished'] + load['errors']}",
        fmt(load["scheduler_lag_ms"]["p99"], " ms"),
        f"{fmt(fan['latency_ms']['p50'], ' ms')} / {fmt(fan['latency_ms']['p99'], ' ms')}",
    ]


def _sched_cells(numbers: dict) -> list:
    slices = numbers["slices"]
    per_slice = numbers["runqueue_wait_ms"] / slices if slices else None
    return [
        fmt(numbers["cpu_ms"], " ms"),
        fmt(numbers["runqueue_wait_ms"], " ms"),
        f"{slices:,.0f}",
        fmt(None if per_slice is None else per_slice * 1000, " µs"),
    ]


def memory_section(results: dict) -> str:
    m = results.get("memory")
    if not m or error_of(m):
        return f"## 4. Memory\n\n**failed**: {error_of(m)}\n" if m else ""
    return (
        "## 4. Memory per idle connection\n\n"
        + MEMORY_METHOD
        + table(
            ["connections", "RSS before", "RSS after", "per connection"],
            [
                [
                    f"{m['connections']:,}",
                    f"{m['rss_before_kib'] / 1024:.1f} MiB",
                    f"{m['rss_after_kib'] / 1024:.1f} MiB",
                    f"{m['kib_per_connection']} KiB",
                ]
            ],
        )
    )


def failover_section(results: dict) -> str:
    r = results.get("failover")
    if not r:
        return ""
    title = "## 5. Redis Sentinel failover (issue #16)\n\n"
    if error_of(r):
        return f"{title}**failed**: {error_of(r)}\n"
    header = [
        "kill",
        "sentinel log: sdown / odown / switch",
        "promoted",
        "all ranks true",
        "after promotion",
        "first push",
        "moved",
        "missing",
    ]
    header += ["cancels answered (slowest)", "cancel retries (503)", "node recovery A / B", "dropped sockets"]
    rows = [_failover_row(i, rnd) for i, rnd in enumerate(r["rounds"], 1)]
    return title + FAILOVER_METHOD.format(**r) + table(header, rows) + "\n" + _failover_summary(r) + _failover_nodes(r)


def _failover_row(i: int, rnd: dict) -> list:
    moved = rnd["moved"]
    recovery = " / ".join(fmt(_ms(node["recovery_s"]), " ms") for node in rnd["nodes"])
    return [
        f"{i} ({rnd['old_primary']} → {rnd['new_primary']})",
        " / ".join(fmt(_ms(_marks(rnd).get(step)), " ms") for step in ("sdown", "odown", "switch")),
        fmt(_ms(rnd["promoted_s"]), " ms"),
        fmt(_ms(rnd["settled_s"]), " ms") if rnd["settled_s"] is not None else "**not within the bound**",
        fmt(_ms(rnd["after_promotion_s"]), " ms"),
        fmt(_ms(rnd["first_push_s"]), " ms"),
        moved["affected"],
        moved["missing"],
        fmt(_ms(max(c["seconds"] for c in rnd["cancels"])), " ms") if rnd["cancels"] else "-",
        ", ".join(str(c["retries"]) for c in rnd["cancels"]),
        recovery,
        rnd["dropped_sockets"],
    ]


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


def _failover_summary(r: dict) -> str:
    total, promoted, after = r["settled_ms"], r["promoted_ms"], r["after_promotion_ms"]
    wrong = r["audit"]["wrong"] + r["audit"]["missing"]
    statuses = sorted({c["status"] for rnd in r["rounds"] for c in rnd["cancels"]})
    near = " (nearest rank: with fewer than 100 samples the p99 is the largest)" if total["n"] < 100 else ""
    return (
        f"Kill → every remaining client holding its true rank, over {total['n']} of {r['kills']} kills that "
        f"settled within {r['bound_s']} s: p50 {fmt(total['p50'], ' ms')}, p99 {fmt(total['p99'], ' ms')}{near}. "
        f"Of that, Sentinel's part (kill → every sentinel names the promoted replica): p50 "
        f"{fmt(promoted['p50'], ' ms')}, p99 {fmt(promoted['p99'], ' ms')} (the first `+switch-master` logged: "
        f"p50 {fmt(_switch(r, 50), ' ms')}, p99 {fmt(_switch(r, 99), ' ms')}); HearO's part (promotion → every rank "
        f"true): p50 {fmt(after['p50'], ' ms')}, p99 {fmt(after['p99'], ' ms')} (from the first `+switch-master`: "
        f"p50 {fmt(_after_switch(r, 50), ' ms')}, p99 {fmt(_after_switch(r, 99), ' ms')}). At the end, {wrong} of "
        f"{r['audit']['clients']:,} clients held a wrong or no rank, and the harness's order differed from the "
        f"database's in {r['audit']['db_order_mismatch']} places. Final statuses of the cancels: "
        f"{', '.join(map(str, statuses))}.\n\n"
    )


def _marks(rnd: dict) -> dict:
    return rnd.get("sentinel_log_s", {})  # runs from before the sentinels' logs were read have none


def _switch(r: dict, pct: float):
    values = [_marks(rnd)["switch"] for rnd in r["rounds"] if "switch" in _marks(rnd)]
    return _ms(percentile(values, pct))


def _after_switch(r: dict, pct: float):
    """Return a percentile of first +switch-master → every rank true (the nodes may follow before all sentinels do)."""
    values = [
        rnd["settled_s"] - _marks(rnd)["switch"]
        for rnd in r["rounds"]
        if rnd["settled_s"] is not None and "switch" in _marks(rnd)
    ]
    return _ms(percentile(values, pct))


def _failover_nodes(r: dict) -> str:
    last = r["rounds"][-1]["nodes"] if r["rounds"] else []
    rows = [
        [
            f"node {'AB'[i]}",
            node["failovers_total"],
            node["recovery_count_total"],
            fmt(_ms(node["recovery_sum_total_s"] / node["recovery_count_total"]), " ms")
            if node["recovery_count_total"]
            else "-",
        ]
        for i, node in enumerate(last[:2])
    ]
    header = ["", "`hearo_redis_failovers_total`", "recovery observations", "mean recovery (its own clock)"]
    return "Each node's own figures from `/metrics` after the last kill:\n\n" + table(header, rows)


def _span(values: list[int]) -> str:
    if not values:
        return "-"
    return str(values[0]) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def targets_section(results: dict) -> str:
    fan, hb, m = results.get("fanout", {}), results.get("heartbeat", {}), results.get("match", {})
    p99 = {n: get(fan, "hub", n, "all", "latency_ms", "p99") for n in ("1000", "5000")}
    wrong = sum(
        get(fan, "hub", n, "audit", "wrong", default=0) + get(fan, "hub", n, "all", "missing", default=0)
        for n in get(fan, "hub", default={})
    )
    speedup = ratio(
        get(fan, "naive_cap100k", "1000", "all", "latency_ms", "p50"),
        get(fan, "hub", "1000", "all", "latency_ms", "p50"),
    )

    def top(kind: str, bucket: str | None = None) -> list[int]:
        tops = [get(fan, "hub", n, "redis", kind, "top_level", default={}) for n in get(fan, "hub", default={})]
        return [sum(t.values()) if bucket is None else t.get(bucket, 0) for t in tops]

    broadcast = top("burst", "broadcast") + top("cancel", "broadcast")
    burst, cancel = top("burst"), top("cancel")
    hb_p99 = get(hb, "fastpath", "rest_node", "load", "latency_ms", "p99")
    hb_sockets = get(hb, "fastpath", "main", "load", "latency_ms", "p99")
    rows = [
        ["fan-out p99, N = 1,000", "≤ 150 ms", fmt(p99["1000"], " ms"), _ok(p99["1000"], 150)],
        ["fan-out p99, N = 5,000", "≤ 500 ms", fmt(p99["5000"], " ms"), _ok(p99["5000"], 500)],
        ["wrong or missing ranks (hub)", "0", str(wrong), _ok(wrong, 0)],
        ["speed-up vs naive at N = 1,000 (p50, raised capacity)", "≥ 20x", fmt(speedup, "x"), _ok_min(speedup, 20)],
        [
            "Redis commands per queue change",
            "≤ 5, whatever N",
            f"{_span(broadcast)} PUBLISH for the broadcast; a matcher burst {_span(burst)} in all; a cancel "
            f"{_span(cancel)} in all (+ the leaver's own CANCELLED message, lease and matcher trigger)",
            _ok(max(burst + broadcast, default=None), 5),
        ],
        [
            "match latency p99, event-driven",
            "≤ 200 ms",
            fmt(get(m, "event_driven", "latency_ms", "p99"), " ms"),
            _ok(get(m, "event_driven", "latency_ms", "p99"), 200),
        ],
        [
            "heartbeat p99 at 500 req/s during fan-out",
            "< 50 ms",
            f"{fmt(hb_p99, ' ms')} on the REST node, as deployed ({fmt(hb_sockets, ' ms')} sent to the socket nodes)",
            _ok(hb_p99, 50),
        ],
        [
            "memory per idle connection",
            "≤ 64 KiB",
            fmt(get(results, "memory", "kib_per_connection"), " KiB"),
            _ok(get(results, "memory", "kib_per_connection"), 64),
        ],
    ]
    return "## Targets\n\n" + table(["target", "goal", "measured", ""], rows)


def _ok(value, limit) -> str:
    return "-" if value is None else ("met" if value <= limit else "**missed**")


def _ok_min(value, limit) -> str:
    return "-" if value is None else ("met" if value >= limit else "**missed**")


GENERIC = (
    "run_forever",
    "_run_once",
    "Server.run",
    "Reactor.run",
    "<module>",
    "CommandLineInterface",
    "Handle._run",
    "Thread.run",
    "_bootstrap",
    "_worker (thread",
    "callWithLogger",
    "callWithContext",
    "ContextTracker",
    "_readOrWrite",
    "run_child",
    "thread_handler",
    "SyncToAsync.__call__",
    "ProtocolTypeRouter",
    "_run (",
)


def profiles_section(results: dict) -> str:
    out = ["## Profiles (py-spy, socket node A unless said otherwise; separate runs not counted above)\n\n"]
    big = max(get(results, "fanout", "hub", default={"0": None}), key=int)
    for title, prof in (
        (f"Fan-out, N = {big}, 8 more changes", get(results, "fanout", "hub", big, "profile_node_a", "profile")),
        (
            "Heartbeat 500 req/s on both nodes + fan-out",
            get(results, "heartbeat", "fastpath", "profiled", "profile_node_a"),
        ),
        (
            "Heartbeat 500 req/s on the REST node + fan-out (the REST node's profile)",
            get(results, "heartbeat", "fastpath", "rest_profiled", "profile_rest_node"),
        ),
    ):
        if not prof or not prof.get("samples"):
            out.append(f"**{title}**: {(prof or {}).get('skipped', 'no samples')}\n\n")
            continue
        incl = [[f"`{f}`", f"{p}%"] for f, p in prof["inclusive"] if not any(g in f for g in GENERIC)][:12]
        own = [[f"`{f}`", f"{p}%"] for f, p in prof["self"]][:12]
        out.append(f"**{title}** ({prof['samples']} samples at 100 Hz, all threads):\n\n")
        out.append(table(["hottest frames (inclusive)", "share"], incl) + "\n")
        out.append(table(["hottest frames (self)", "share"], own) + "\n")
    return "".join(out)


def render(data: dict) -> str:
    meta, results = data["meta"], data["results"]
    parts = [
        header(meta),
        targets_section(results),
        analysis_section(results),
        fanout_section(results),
        match_section(results),
        heartbeat_section(results),
        memory_section(results),
        failover_section(results),
        profiles_section(results),
        NOTES,
    ]
    return "\n".join(part for part in parts if part)  # a phase not run adds no section


def analysis_section(results: dict) -> str:
    """The misses explained, with this run's numbers."""
    fan = results.get("fanout", {})
    out = ["## What the numbers say\n\n"]
    for n in ("1000", "5000"):
        r = get(fan, "hub", n)
        if not r or error_of(r):
            continue
        lat, burst = r["all"]["latency_ms"], r["burst"]
        nodes = ", ".join(fmt(v, " ms") for v in r.get("node_fanout_mean_ms") or [])
        naive = get(fan, "naive_cap100k", n, "all", "latency_ms", "p50")
        out.append(
            f"* **Fan-out, N = {int(n):,}**: p50 {fmt(lat['p50'], ' ms')}, p99 {fmt(lat['p99'], ' ms')} for "
            f"{r['all']['affected_mean']:.0f} moved clients per change on average; {r['all']['missing']} missing, "
            f"{r['audit']['wrong'] + r['audit']['missing']} wrong at the end. Bursts (every client moves): p50 "
            f"{fmt(burst['latency_ms']['p50'], ' ms')}. The nodes' own broadcast-to-last-push time averages {nodes}; "
            f"the rest is the cancel's HTTP round trip (p50 {fmt(r['cancel']['request_ms']['p50'], ' ms')}) and the "
            f"single harness process reading every frame on the same 2 vCPUs. Naive (raised capacity) p50 is "
            f"{fmt(ratio(naive, lat['p50']), 'x')} the hub's.{_stalls(r)}\n"
        )
    out.append(ANALYSIS_STATIC)
    return "".join(out)


def _stalls(r: dict) -> str:
    """The changes far slower than the median, set beside the nodes' full garbage collections."""
    done = [c for c in r.get("changes_raw", []) if c.get("latency") is not None]
    if not done:
        return ""
    median = sorted(c["latency"] for c in done)[len(done) // 2]
    slow = [c for c in done if c["latency"] > 2 * median]
    gcs = r.get("node_full_collections") or []
    out = ""
    if slow:
        listed = ", ".join(f"{c['latency'] * 1000:.0f} ms ({c['affected']:,} moved)" for c in slow)
        out += f" Changes over twice the median: {listed}."
    if gcs:
        per_node = "; ".join(
            f"node {'AB'[i]}: {g['count']} ({fmt(g['total_ms'], ' ms')} in all, {g['over_100ms']} over 100 ms)"
            for i, g in enumerate(gcs[:2])
        )
        out += f" Full garbage collections meanwhile ({_GC_METRIC}): {per_node}."
    return out


_GC_METRIC = '`hearo_gc_pause_seconds{generation="2"}`'


ANALYSIS_STATIC = """* **What changed since the first recorded run** (p99 186 ms / 1,119 ms at N = 1,000 / 5,000, 15-28
  Redis commands per change, heartbeat p99 651 ms): the queue broadcast is one Redis `PUBLISH` that every hub subscribes
  to instead of a channels-redis group message; a hub reads only the waiting ids (`queue_order`, an index-only scan)
  instead of ids, customer ids and every row's timestamp; the hub yields the event loop every 2 ms instead of every 100
  pushes; a fast heartbeat is one Redis round trip (a Lua script) instead of two; the URLconf is imported at start-up
  (py-spy showed the first request importing every view while the node's pushes waited); Daphne runs with `-v0`; no
  persistent PostgreSQL connections under Daphne; two unmeasured warm-up changes before each fan-out measurement; the
  REST API on a node of its own, as `docker-compose.yml` deploys it.
* **Fan-out at N = 5,000: the p99 is a full garbage collection.** The changes land in proportion to the clients that
  moved (roughly 70 ms per 1,000 moved clients end to end here; a burst moves all 5,000), except the ones listed above
  as over twice the median, and every such stall coincides with a full (generation 2) collection on a node, timed by
  the node itself (`hearo_gc_pause_seconds`, in `/metrics`). With 2,500 sockets a Daphne process holds millions of
  long-lived objects (Twisted, autobahn, Channels and HearO's per connection) and a full collection walks them all
  with the event loop stopped: about half a second here, once or twice in 20 changes, and the change in flight waits
  it out. Every run on this box today had that shape (p99 578-814 ms, set by one or two changes); where the nodes'
  collections were timed (this run, and a separate run of the same scenario: stalls of 542 and 731 ms, one 0.5 s
  full collection on each node) every stall matched a collection. Left, and why: fewer objects per process shortens
  the pause in proportion (more Daphne processes per host: each hub pushes only to its own sockets, so the design
  scales out by process); `gc.freeze()` after a connection storm would skip the walk but
  would also freeze, and leak, every reference cycle of the connections that later close, so it is not done blindly;
  Python 3.14's incremental collector is outside the fixed stack (3.11). The profile below shows where a node's time
  goes otherwise: its pushes (the STOMP encoder and HearO's code are ~11 µs a frame, measured in-process) and, mostly,
  Daphne/autobahn/Twisted per frame: a `transport.write` each (`untilConcludes`, the socket send), an epoll modify to
  start and stop watching the socket, the ASGI send hop.
* **Speed-up over the naive design is bounded by the naive design's speed that day.** Naive spends ~1.3 ms of Redis
  round trips per moved customer, one after another inside the cancel's request: 700-720 ms at N = 1,000 in this run
  and in two more today, 2.1 s in the run recorded earlier (load average 5.6, which slows round trips more than it
  slows the hub). The hub's p50 was 54-72 ms in all of them: the cancel's own HTTP round trip (~20 ms) plus ~35 ms for
  each node to push ~300 frames and for the harness to read ~600. 20x at N = 1,000 needs the hub under ~35 ms end to
  end, about the cancel's round trip plus Daphne's per-frame cost: missed on an unloaded box (11-13x), met on a
  loaded one (29.5x). The gap widens with N (24.5x at 5,000 here), and the naive design also loses messages at
  channels-redis's default capacity.
* **Redis per change**: the queue change itself is one `PUBLISH` whatever N (the test suite asserts exactly one
  command for a queue change at N = 10 and N = 1,000); a matcher burst is nothing else. A cancel also tells the
  leaving customer CANCELLED (a per-customer channels-redis group message: 7 top-level commands to send, 4 per
  receiving process), drops its lease and token (one `DEL`) and queues a matcher pass (Celery), which is why its row
  is larger. The remaining differences between rows are idle-window noise (idle nodes poll their channels with
  `BZPOPMIN`).
* **Heartbeat under fan-out: the REST node takes the garbage-collection tail away, not the CPU contention.** Beats
  are cheap everywhere (p50 1-2 ms; one Redis round trip, no database). Sent to the socket nodes, a beat that arrives
  while its node collects or pushes thousands of frames waits on the same event loop: their worst cases (~0.5-0.6 s)
  are the full-collection pauses above. The REST node holds no sockets, its heap is small and its worst case stays
  near 0.1-0.2 s; but its p99 at 500/s still misses 50 ms: 48-154 ms across the runs today (knee runs included), with
  5-6 ms at 250/s. The run-queue table shows why: while a change moves thousands of clients, both vCPUs are taken by
  the socket nodes, the harness parsing 5,000 clients' frames and the load generator itself, and a socket node
  waited up to 2 s for a CPU within a 10 s run. A beat that arrives then waits for a CPU, whichever process serves it.
  Deployed as `docker-compose.yml` does on a host with a core for the REST node, that wait goes; this box cannot show
  it (two vCPUs for everything). Clients on a socket need no REST beat at all: socket traffic renews the lease, so
  only the polling tier sends one.
* **REST polling**: every client asks every 5 s, so N = 1,000 is 200 requests a second, above what two Django nodes
  serve for the rank view while pushing (the achieved rate and latency in its table); staleness is 2.5 s on average
  and up to 5 s by construction, against tens of milliseconds pushed.
* **Robustness seen while measuring**: closing ~2,000 sockets at once used to make channels-redis raise
  `MaxConnectionsError` in `group_discard` (its pool raised when exhausted); HearO now uses a pool that waits
  (`realtime.layers.WaitingRedisChannelLayer`). 200 simultaneous WebSocket handshakes exceed Daphne's handshake timeout
  (the harness opens 100 at a time, retries, and closes in batches of 200). RabbitMQ here runs with a soft limit of
  1,024 open files: past ~1,000 Web-STOMP connections it hits EMFILE, its memory monitor crashes and it refuses new
  subscriptions until `rabbitmqctl stop_app && start_app`; the harness caps the RabbitMQ baseline below that limit
  (N shown in its row), so it is not measured at 1,000 or 5,000 clients. Its per-change latency is a lower bound (no
  database, no HTTP).
* **Naive design**: with channels-redis's default capacity 100 it loses messages at N = 5,000 when the receivers fall
  behind (the `missing` column), and every change holds the cancel's HTTP request for seconds because the sends run on
  commit inside the request. Naive runs have 2-8 changes each, so their p99 is one sample.

"""


# -- the method, in words ------------------------------------------------------------------

FANOUT_METHOD = """
Clients: asyncio + `websockets`, STOMP frames by hand (CONNECT with `Authorization: Bearer`, `heart-beat:0,0`,
SUBSCRIBE to the customer's own `/topic/queue-rank/{id}`), split evenly over both Daphne nodes, all in the harness
process. Customers are seeded with the ORM (one WAITING registration each, token cache and lease as a join leaves
them). Two unmeasured warm-up cancels come first (a node's first request and first matcher trigger pay one-off
costs in every design). Changes run one at a time: a **cancel** of a random customer (`POST /api/queue/cancel` on
node A; t0 just before the request) or, every 5th change, a **matcher burst** (the first 5 customers marked MATCHED
in one transaction that calls `queues.services.queue_changed`, published by the harness exactly as a node would; t0 just
before the transaction). Latency = t0 → the last client whose rank changed *first holding its correct new rank*.
*missing* = affected clients that never got there within the bound (10 s); *wrong (final)* = clients
whose last rank differs from the truth after a quiet second at the end (the harness's order is also checked against
the database). The naive design keeps the hub's 30 s safety refresh, which would mask drops given time; the bound
is shorter than that (10 s). RabbitMQ has no database or HTTP in its path, so it is a lower bound for that design.
"""

LINES_METHOD = """The same cluster right after the one-queue runs: N customers seeded round robin into six
lines (general, youth, crisis; Korean and English each; N/6 each, interleaved in time), every client expecting its
rank in its own line. A cancel (a random customer) moves only those behind it in its line; every 5th change is a
matcher burst of the 5 earliest arrivals, whichever lines they wait in, in one transaction publishing one queue
change that names their queues (as the matcher pass does), so each hub re-reads only those queues. Latency,
*missing* and *wrong* as above; the ratios divide by the one-queue row (fewer clients move per change with six
lines, so lower is expected).

"""

MATCH_METHOD = """Per sample: a customer joins (`POST /api/queue/join`) and subscribes; a counselor (created with
`counselor_create` + a DRF token) listens on `/topic/counselor/{id}`; t0 = `POST /api/counselor/status AVAILABLE`;
the sample ends when the customer holds MATCHED and the counselor MATCH_ASSIGNED. Then both sides confirm the join,
the counselor completes the call and goes OFFLINE. A random pause (0-0.5 s event-driven, 0-5 s beat-only) before t0
keeps samples from locking to the beat's phase. Celery: `worker --pool=solo` and `beat`, Redis broker.

"""

HEARTBEAT_METHOD = """`bench/loadgen.py`, its own process: requests scheduled at fixed intervals over 64 keep-alive
connections (alternating nodes), latency from the *scheduled* time (no coordinated omission); bearer tokens of the
N = 5,000 customers connected to the two socket nodes, round robin. Fan-out cancels run once a second meanwhile.
*REST node* = a third Daphne process of the same app that holds no sockets, as `docker-compose.yml`'s proxy
deploys it (`/api/` goes there); *socket nodes* = the beats sent to the nodes pushing the ranks.
*generator lag* = how late the generator queued a request (its own health); *achieved* = completed ÷ time to the
last completion. *non-2xx* are 409s: beats from customers the concurrent cancels had just taken out of the queue
(the visit ended; the right answer).

"""

FAILOVER_METHOD = """A Redis primary, one replica and three sentinels of the phase's own (`bench/redis_ha.py`;
quorum 2, `down-after-milliseconds` {down_after_ms}, `failover-timeout` {failover_timeout_ms}); both socket nodes
configured with `REDIS_URL=""` and `REDIS_SENTINELS` only (Celery's broker as `sentinel://` URLs). N = {n:,}
seeded customers hold STOMP sockets, alternating nodes. Each round: the primary is SIGKILLed; right after,
{cancels_per_kill} random customers cancel (`POST /api/queue/cancel`, alternating nodes), a 503 retried after its
`Retry-After` as the page does, so the queue changes while Redis has no primary and the other clients must get new
ranks after the failover. *promoted* = kill → every live sentinel names the
promoted replica and it answers as a primary (polled every 0.2 s: Sentinel's detection and failover);
*all ranks true* = kill → the last moved client first holds its new rank, with every unmoved client still on its
own (a round that needs polling for the unmoved ones is timed to 0.2 s); *after promotion* = the difference, HearO's
part; *first push* = kill → the first moved client's correct rank; *cancels answered* = kill → the slowest cancel's
final answer (retries included). Then the killed server is started again, empty,
and the next kill waits until it is a replica in sync, every sentinel sees it and both nodes' `/readyz` pass (up
to 30 s). *sentinel log* = kill → the first sentinel to log `+sdown` (one sentinel holds the primary down),
`+odown` (a quorum does) and `+switch-master` (names the promoted replica), from their millisecond log stamps.
*node recovery* = each node's `hearo_redis_failover_recovery_seconds` for the round (its first failed connection →
its first connection to the promoted primary).

"""

MEMORY_METHOD = """`VmRSS` of node A's Daphne process (from /proc) after 50 warm-up connections, then after 2,000 more
idle STOMP connections (connected and subscribed to their rank topic), 3 s to settle.

"""

NOTES = """## Method notes and noise

* One machine for everything: 2 vCPUs run the Daphne nodes (two socket nodes, and a REST node in the hub phase),
  the harness with all N clients, Redis, PostgreSQL, RabbitMQ and the load generator, so client-side processing is
  inside every latency and the designs compete with their own load. It is shared and noisy (see the load averages
  above); medians are the figures to quote, p99 over 25-30 changes is close to the max.
* A private `redis-server` (free port, no persistence) is started for the run so that MONITOR and command counts
  see nothing but the system under test; PostgreSQL gets its own database `hearo_bench`, created and dropped.
* Redis commands: MONITOR shows commands run inside Lua scripts (channels-redis `group_send`) separately; they
  are listed apart from top-level commands. A channel-layer message is one ZADD into a channel's sorted set; HearO's
  queue broadcast is one PUBLISH, counted in its own column.
  Cancels also send the leaving customer its CANCELLED message (one more group_send) and drop its lease and token
  (cache); every cancel also queues a matcher pass on the Celery broker (no worker runs in these clusters).
* `results.json` holds every raw number, including each change's latency and each scenario's error, if any.
"""
