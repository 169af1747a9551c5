"""Render results.json as RESULTS.md: the command, the machine, per-scenario tables, targets."""

from bench.analysis import analysis_section
from bench.stats import percentile, ratio
from bench.values import fmt, get

DESIGNS = (
    ("hub", "HearO hub (1 broadcast per change)"),
    ("naive_cap100", "naive, channels-redis default capacity 100"),
    ("naive_cap100k", "naive, capacity 100,000"),
    ("rabbitmq", "RabbitMQ Web-STOMP relay (1 SEND per customer)"),
)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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
    out.append(rabbit_section(fan))
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


# The columns ``_latency_cells`` fills.
LATENCY_HEADER = ["changes (complete)", "p50", "p99", "max", "missing", "wrong (final)"]

FANOUT_HEADER = [
    "design",
    *LATENCY_HEADER,
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


def rabbit_section(fan: dict) -> str:
    """The hub beside the RabbitMQ Web-STOMP relay at each N both ran, from this run's numbers (issue #17)."""
    rows = [_rabbit_row(int(n), get(fan, "hub", n), r) for n, r in sorted(fan.get("rabbitmq", {}).items(), key=_n)]
    if not rows:
        return ""
    return (
        "\n### Hub vs RabbitMQ Web-STOMP relay at the same N\n\n"
        "Hub and relay figures of a row come from this run, at the same N (relay ÷ hub above 1: the hub is ahead).\n\n"
        + table(RABBIT_HEADER, rows)
    )


RABBIT_HEADER = [
    "N",
    "hub p50",
    "relay p50",
    "relay ÷ hub p50",
    "hub p99",
    "relay p99",
    "relay ÷ hub p99",
    "relay clients connected",
    "broker open-files limit",
]


def _n(item: tuple[str, dict]) -> int:
    return int(item[0])


def _rabbit_row(n: int, hub: dict | None, relay: dict) -> list:
    if error_of(relay):
        return [f"{n:,}", "-", f"failed: {error_of(relay)[:80]}", *["-"] * 6]
    hub_lat = {} if not hub or error_of(hub) else hub["all"]["latency_ms"]
    lat = relay["all"]["latency_ms"]
    # A relay capped below N (too few open files) is no comparison at N: no ratio then.
    same_n = relay["n"] == relay.get("n_wanted", relay["n"])
    limit = relay.get("broker_open_files_limit")
    return [
        f"{n:,}",
        fmt(hub_lat.get("p50"), " ms"),
        fmt(lat["p50"], " ms"),
        fmt(ratio(lat["p50"], hub_lat.get("p50")) if same_n else None, "x"),
        fmt(hub_lat.get("p99"), " ms"),
        fmt(lat["p99"], " ms"),
        fmt(ratio(lat["p99"], hub_lat.get("p99")) if same_n else None, "x"),
        f"{relay['n']:,} of {relay.get('n_wanted', relay['n']):,} in {relay['connect_s']} s",
        "-" if limit is None else f"{limit:,}",
    ]


def rabbit_targets(fan: dict, uv: dict | None = None, servers: tuple[str, str] = ("Daphne", "Uvicorn")) -> list[list]:
    """One target row per N: the hub ahead of the relay at p50 and at p99, at the same N in the same run.

    With the uvicorn phase's figures (``uv``), the hub on each socket server is set against the same relay run.
    """
    ns = sorted(set(fan.get("rabbitmq", {})) | {"1000", "5000"}, key=int)
    return [_rabbit_target(n, fan, uv or {}, servers) for n in ns]


def _rabbit_target(n: str, fan: dict, uv: dict, servers: tuple[str, str]) -> list:
    goal = f"hub p50 and p99 below the Web-STOMP relay's, N = {int(n):,}"
    hub, relay = get(fan, "hub", n, "all", "latency_ms"), get(fan, "rabbitmq", n)
    if error_of(relay):
        return [goal, "ahead at both", f"relay failed: {error_of(relay)[:80]}", "-"]
    if not hub or not relay:
        return [goal, "ahead at both", "-", "-"]
    if relay["n"] != relay.get("n_wanted", relay["n"]):
        return [goal, "ahead at both", f"relay reached only N = {relay['n']:,}: not comparable", "**missed**"]
    lat = relay["all"]["latency_ms"]
    hubs = [(name, h) for name, h in zip(servers, (hub, get(uv, "fanout", n, "all", "latency_ms")), strict=True) if h]
    measured, verdicts = [], []
    for _, h in hubs:
        cells = [f"{p} {fmt(h[p], ' ms')} vs {fmt(lat[p], ' ms')} ({fmt(ratio(lat[p], h[p]), 'x')})" for p in PCTS]
        measured.append(", ".join(cells))
        if any(v is None for p in PCTS for v in (h[p], lat[p])):
            verdicts.append("-")  # a run whose changes all missed the bound
        else:
            verdicts.append("met" if all(h[p] < lat[p] for p in PCTS) else "**missed**")
    if len(hubs) == 1:
        return [goal, "ahead at both", measured[0], verdicts[0]]
    cell = "; ".join(f"on {name}: {m}" for (name, _), m in zip(hubs, measured, strict=True))
    return [goal, "ahead at both", cell, _verdict_each([name for name, _ in hubs], verdicts)]


PCTS = ("p50", "p99")


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
        *_latency_cells(r),
        r["all"]["affected_mean"],
        " / ".join(fmt(p) for p in publishes),
        fmt(ratio(lat["p50"], base.get("p50")), "x"),
        fmt(ratio(lat["p99"], base.get("p99")), "x"),
    ]


def _latency_cells(r: dict) -> list:
    """Return a fan-out run's changes (complete), p50, p99, max, missing and wrong (final) cells."""
    lat = r["all"]["latency_ms"]
    return [
        f"{r['all']['changes']} ({r['all']['complete']})",
        fmt(lat["p50"], " ms"),
        fmt(lat["p99"], " ms"),
        fmt(lat["max"], " ms"),
        r["all"]["missing"],
        r["audit"]["wrong"] + r["audit"]["missing"],
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
    weight = ", CPU weight x3" if (fast.get("rest_node") or {}).get("cpu_weighted") else ""
    for label, run in (
        (f"fast path, REST node (no sockets; as deployed{weight})", fast.get("rest_node")),
        ("fast path, REST node at a socket node's CPU weight (baseline)", fast.get("rest_node_even_weight")),
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
        for label, run in (
            ("REST node", fast.get("rest_node")),
            ("REST node at a socket node's weight", fast.get("rest_node_even_weight")),
            ("both socket nodes", fast.get("main")),
        )
        for process, numbers in ((run or {}).get("sched") or {}).items()
    ]
    if sched:
        out.append(
            "\nWhere the processes' time went during those 500/s runs (`/proc/{pid}/task/*/schedstat`: time on a "
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


UVICORN_METHOD = """The hub phase's two-node fan-out again, same N and changes, with the socket nodes on Uvicorn
(`websockets` implementation, deploy/serve's flags) instead of Daphne; the REST node stays on Daphne. Nodes =
`hearo_fanout_seconds` mean per change (broadcast received → last frame handed to the socket), node A / node B.
Both runs share the machine with everything else: compare them within this run only.

"""
UVICORN_HEADER = [
    "socket nodes",
    *LATENCY_HEADER,
    "nodes: broadcast → last push",
    "connect all",
    "p50 / p99 ÷ baseline",
]


def uvicorn_section(results: dict) -> str:
    """Daphne against Uvicorn socket nodes at equal N, from this run's hub and uvicorn phases only."""
    uv = results.get("uvicorn")
    if not uv:
        return ""
    base_name = uv.get("baseline_server", "daphne")
    hub = get(results, "fanout", "hub", default={})
    out = ["## Socket nodes: Daphne or Uvicorn (issue #17)\n\n", UVICORN_METHOD]
    for n in sorted(get(uv, "fanout", default={}), key=int):
        base, mine = hub.get(n), uv["fanout"][n]
        out.append(f"### N = {int(n):,}\n\n")
        out.append(table(UVICORN_HEADER, [_server_row(base_name, base, None), _server_row("uvicorn", mine, base)]))
        out.append(_server_verdict(base_name, base, mine) + "\n")
    mem = [(base_name, results.get("memory")), ("uvicorn", uv.get("memory"))]
    cells = [[name, fmt(get(m, "kib_per_connection"), " KiB"), get(m, "connections")] for name, m in mem if m]
    if cells:
        out.append(table(["socket nodes", "RSS per idle connection", "connections"], cells))
    if "uvicorn" in results.get("phase_errors", {}):
        out.append(f"\nThe uvicorn phase **failed**: {results['phase_errors']['uvicorn'][:300]}\n")
    return "".join(out)


def _server_row(label: str, r: dict | None, base: dict | None) -> list:
    if not r or error_of(r):
        return [label, f"failed: {error_of(r)[:80]}" if r else "not run", *["-"] * 8]
    lat, node = r["all"]["latency_ms"], r.get("node_fanout_mean_ms") or [None, None]
    vs = "-"
    if base and not error_of(base):
        b = base["all"]["latency_ms"]
        vs = f"{_share(lat['p50'], b['p50'])} / {_share(lat['p99'], b['p99'])}"
    return [
        label,
        *_latency_cells(r),
        " / ".join(fmt(v, " ms") for v in node),
        fmt(r["connect_s"], " s"),
        vs,
    ]


def _share(value, baseline) -> str:
    return f"{value / baseline:.2f}x" if value is not None and baseline else "-"


def _server_verdict(base_name: str, base: dict | None, mine: dict | None) -> str:
    """Say whether Uvicorn was faster at both percentiles with no more missing or wrong pushes."""
    if not base or not mine or error_of(base) or error_of(mine):
        return "\nNo comparison at this N: a run is missing or failed.\n"
    b, m = base["all"]["latency_ms"], mine["all"]["latency_ms"]

    def faults(r: dict) -> int:
        return r["all"]["missing"] + r["audit"]["wrong"] + r["audit"]["missing"]

    faster = m["p50"] < b["p50"] and m["p99"] < b["p99"]
    speed = "faster at p50 and p99" if faster else "not faster at both p50 and p99"
    equal = "as correct" if faults(mine) <= faults(base) else "**less correct**"
    tally = f"missing + wrong {faults(mine)} against {faults(base)}"
    return f"\nUvicorn was {speed} than {base_name}, and {equal} ({tally}).\n"


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
    uv = get(results, "uvicorn", default={})
    base = uv.get("baseline_server", "daphne").capitalize()
    p99 = {n: get(fan, "hub", n, "all", "latency_ms", "p99") for n in ("1000", "5000")}
    uv_p99 = {n: get(uv, "fanout", n, "all", "latency_ms", "p99") for n in ("1000", "5000")}
    wrong = sum(
        get(fan, "hub", n, "audit", "wrong", default=0) + get(fan, "hub", n, "all", "missing", default=0)
        for n in get(fan, "hub", default={})
    )
    speedup = ratio(
        get(fan, "naive_cap100k", "1000", "all", "latency_ms", "p50"),
        get(fan, "hub", "1000", "all", "latency_ms", "p50"),
    )
    uv_speedup = ratio(
        get(uv, "naive_cap100k", "1000", "all", "latency_ms", "p50"),
        get(uv, "fanout", "1000", "all", "latency_ms", "p50"),
    )
    memory = get(results, "memory", "kib_per_connection")
    uv_memory = get(uv, "memory", "kib_per_connection")

    def top(kind: str, bucket: str | None = None) -> list[int]:
        counted = [get(fan, "hub", n, "redis", kind, default={}) for n in get(fan, "hub", default={})]
        tops = [per_change_buckets(c) for c in counted]
        return [sum(t.values()) if bucket is None else t.get(bucket, 0) for t in tops]

    renewals = [
        lease_renewals(get(fan, "hub", n, "redis", k, default={}))
        for n in get(fan, "hub", default={})
        for k in ("cancel", "burst")
    ]

    broadcast = top("burst", "broadcast") + top("cancel", "broadcast")
    burst, cancel = top("burst"), top("cancel")
    hb_p99 = get(hb, "fastpath", "rest_node", "load", "latency_ms", "p99")
    hb_sockets = get(hb, "fastpath", "main", "load", "latency_ms", "p99")
    servers = (base, "Uvicorn")
    rows = [
        ["fan-out p99, N = 1,000", "≤ 100 ms", *_on_both(servers, (p99["1000"], uv_p99["1000"]), " ms", _ok, 100)],
        ["fan-out p99, N = 5,000", "≤ 300 ms", *_on_both(servers, (p99["5000"], uv_p99["5000"]), " ms", _ok, 300)],
        ["wrong or missing ranks (hub)", "0", str(wrong), _ok(wrong, 0)],
        [
            "speed-up vs naive at N = 1,000 (p50, raised capacity; both designs on the same socket server)",
            "≥ 20x",
            *_on_both(servers, (speedup, uv_speedup), "x", _ok_min, 20),
        ],
        [
            "Redis commands per queue change",
            "≤ 5, whatever N",
            f"{_span(broadcast)} PUBLISH for the broadcast; a matcher burst {_span(burst)} in all; a cancel "
            f"{_span(cancel)} in all (+ the leaver's own CANCELLED message, lease and matcher trigger); apart, "
            f"the nodes' lease keepers' background renewals that fell in a window: {_span(renewals)}",
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
        ["memory per idle connection", "≤ 40 KiB", *_on_both(servers, (memory, uv_memory), " KiB", _ok, 40)],
    ]
    rows += rabbit_targets(fan, uv, servers)
    return "## Targets\n\n" + table(["target", "goal", "measured", ""], rows)


def _on_both(servers: tuple[str, str], values: tuple, unit: str, check, limit) -> list[str]:
    """Return the measured cell and the verdict for a target measured with the socket nodes on each server.

    The first server is the default (the hub phase's); the second only if the
    run measured it (the uvicorn phase).
    """
    if values[1] is None:
        return [fmt(values[0], unit), check(values[0], limit)]
    measured = " · ".join(f"{fmt(v, unit)} on {name}" for name, v in zip(servers, values, strict=True))
    return [measured, _verdict_each(servers, [check(v, limit) for v in values])]


def _verdict_each(servers, verdicts: list[str]) -> str:
    """One verdict where every server got the same, else each server's own."""
    if len(set(verdicts)) == 1:
        return verdicts[0]
    return "; ".join(f"{verdict} on {name}" for name, verdict in zip(servers, verdicts, strict=True))


def lease_renewals(counted: dict) -> int:
    """Return the leases the nodes' keepers renewed in a change's window (not caused by the change).

    A keeper renews with a SET per lease inside one script call per batch;
    runs before that counted a top-level SET per lease, and runs before the
    bucket existed counted them as cache SETs (no change itself sets a cache
    key in these scenarios: a cancel deletes its lease).
    """
    top, inner = counted.get("top_level", {}), counted.get("in_scripts", {})
    if inner.get("lease_renewals"):
        return inner["lease_renewals"]
    if "lease_renewals" in top:
        return top["lease_renewals"]
    return counted.get("commands", {}).get("SET", 0)


def per_change_buckets(counted: dict) -> dict:
    """Return a change's top-level Redis commands by bucket, without the lease keepers' renewals."""
    top = dict(counted.get("top_level", {}))
    if "lease_renewals" in top:
        top.pop("lease_renewals")
    else:
        top["cache"] = top.get("cache", 0) - counted.get("commands", {}).get("SET", 0)
    return top


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
        uvicorn_section(results),
        failover_section(results),
        profiles_section(results),
        NOTES,
    ]
    return "\n".join(part for part in parts if part)  # a phase not run adds no section


# -- the method, in words ------------------------------------------------------------------

FANOUT_METHOD = """
Clients: asyncio, STOMP frames by hand (CONNECT with `Authorization: Bearer`, `heart-beat:0,0`, SUBSCRIBE to the
customer's own `/topic/queue-rank/{id}`), split evenly over both Daphne nodes, all in the harness process, over the
harness's own lean WebSocket client (`bench/wsclient.py`: a protocol callback per message, no task per connection;
tested against the `websockets` library's server). The harness shares the machine's CPUs with the servers, so what
it spends per frame is taken from them: the CPU each process spent per change is recorded (see "What the numbers
say"). Customers are seeded with the ORM (one WAITING registration each, token cache and lease as a join leaves
them). Two unmeasured warm-up cancels come first (a node's first request and first matcher trigger pay one-off costs
in every design). Changes run one at a time: a **cancel** of a random customer (`POST /api/queue/cancel` on the REST
node, a third Daphne process that holds no sockets, where `docker-compose.yml`'s proxy sends `/api/`; every HearO
cluster of the fan-out runs has one; t0 just before the request) or, every 5th change, a **matcher burst** (the
first 5 customers marked MATCHED in one transaction that calls `queues.services.queue_changed`, published by the
harness exactly as a node would; t0 just before the transaction). Latency = t0 → the last client whose rank changed
*first holding its correct new rank*.
*missing* = affected clients that never got there within the bound (10 s); *wrong (final)* = clients
whose last rank differs from the truth after a quiet second at the end (the harness's order is also checked against
the database). The naive design keeps the hub's 30 s safety refresh, which would mask drops given time; the bound
is shorter than that (10 s). RabbitMQ has no database or HTTP in its path, so it is a lower bound for that design;
it runs on a node the bench starts for the phase (see the notes) with the same N and the same kinds of change.
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
deploys it (`/api/` goes there), and at the CPU weight compose gives it (`cpu_shares: 3072`, three times a socket
node's; here its autogroup's nice, -5, `bench/cluster.py`); *at a socket node's weight* = the same node, right
after, with the default weight (the baseline); *socket nodes* = the beats sent to the nodes pushing the ranks.
*generator lag* = how late the generator queued a request (its own health); *achieved* = completed ÷ time to the
last completion. The generator runs in a session of its own (its own scheduling group, not a share of the
harness's), and at each whole second of the run it reads every process's CPU time and time *runnable but waiting
for a CPU* (schedstat: the nodes, the harness, Redis and itself) and the machine's steal time, so a slow second is
set against who waited for a CPU in it (the reading under "What the numbers say"). *non-2xx* are 409s: beats from
customers the concurrent cancels had just taken out of the queue (the visit ended; the right answer).

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

* One machine for everything: 2 vCPUs run the Daphne nodes (two socket nodes, and a REST node in every HearO
  fan-out cluster), the harness with all N clients, Redis, PostgreSQL, RabbitMQ and the load generator, so
  client-side processing is inside every latency and the designs compete with their own load. It is shared and noisy
  (see the load averages above); medians are the figures to quote, p99 over 25-30 changes is close to the max.
* A private `redis-server` (free port, no persistence) is started for the run so that MONITOR and command counts
  see nothing but the system under test; PostgreSQL gets its own database `hearo_bench`, created and dropped.
* The RabbitMQ phase starts a RabbitMQ node of its own (`bench/rabbitmq.py`: its own node name, ports, data, logs,
  config and Erlang cookie under the run's log directory; only Web-STOMP enabled, no management; open-files limit
  raised with `ulimit -n` before `rabbitmq-server`, up to 65,536 or the hard limit) and stops it at the end; the
  machine's broker is not used.
* Redis commands: MONITOR shows commands run inside Lua scripts (channels-redis `group_send`) separately; they
  are listed apart from top-level commands. A channel-layer message is one ZADD into a channel's sorted set; HearO's
  queue broadcast is one PUBLISH, counted in its own column.
  Cancels also send the leaving customer its CANCELLED message (one more group_send) and drop its lease and token
  (cache); every cancel also queues a matcher pass on the Celery broker (no worker runs in these clusters).
* `results.json` holds every raw number, including each change's latency and each scenario's error, if any.
"""
