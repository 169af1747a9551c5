"""Who spent the machine's CPUs while a scenario's changes ran: CPU time per process over the window.

Every process of a fan-out run shares the same CPUs (the servers, Redis,
PostgreSQL, and the harness's own thousands of clients), so a change's
end-to-end time can be no shorter than the CPU time all of them spent on it
divided by the CPUs there are. From /proc/{pid}/stat (user + system, every
thread's, those that ended included); the harness's from ``time.process_time``.
What the same processes spend in an idle window as long (timers, lease
renewals, collections) is measured right after and taken off.
"""

import asyncio
import os
import time
from pathlib import Path

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def process_cpu_ms(pid: int) -> float | None:
    """Return a process's user + system CPU time in ms (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) * TICK_MS


def pids_by_cmdline(*fragments: str) -> list[int]:
    """Return the processes whose command line contains every fragment (e.g. one database's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(f in cmdline for f in fragments):
            found.append(int(entry.name))
    return found


class CpuWindow:
    """CPU time of named processes (and of groups found by command line) between ``start`` and ``stop``."""

    def __init__(self, named: dict[str, int], groups: dict[str, tuple[str, ...]] | None = None) -> None:
        self.named = named
        self.groups = groups or {}
        self.before: dict[str, dict[int, float]] = {}
        self.spent: dict[str, float] = {}
        self.wall_s = 0.0
        self._started = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        out = {label: {pid: process_cpu_ms(pid)} for label, pid in self.named.items()}
        for label, fragments in self.groups.items():
            out[label] = {pid: process_cpu_ms(pid) for pid in pids_by_cmdline(*fragments)}
        out["harness"] = {os.getpid(): time.process_time() * 1000}
        return out

    def start(self) -> None:
        self.before = self._read()
        self._started = time.monotonic()

    def stop(self) -> None:
        """Sum each label's CPU over the processes present at both ends (a backend that came or went is left out)."""
        after = self._read()
        self.wall_s = time.monotonic() - self._started
        self.spent = {}
        for label, pids in after.items():
            old = self.before.get(label, {})
            self.spent[label] = sum(
                now - old[pid] for pid, now in pids.items() if now is not None and old.get(pid) is not None
            )

    def idle_like(self) -> "CpuWindow":
        """Return a window over the same processes, for the idle baseline."""
        return CpuWindow(self.named, self.groups)

    def per_change(self, changes: int, idle: "CpuWindow | None" = None) -> dict:
        """Return ms of CPU per change for each label and in all (``total``), the idle window's share taken off.

        ``idle_ms``: what each spent in the idle window, per change's worth of time (already taken off).
        """
        if not changes or not self.spent:
            return {}
        scale = self.wall_s / idle.wall_s if idle is not None and idle.wall_s else 0.0
        baseline = {label: (idle.spent.get(label, 0.0) if idle else 0.0) * scale for label in self.spent}
        net = {label: max(0.0, ms - baseline[label]) / changes for label, ms in self.spent.items()}
        return {
            "net_ms": {label: round(ms, 1) for label, ms in net.items()},
            "total_ms": round(sum(net.values()), 1),
            "idle_ms": {label: round(ms / changes, 1) for label, ms in baseline.items()},
            "wall_s": round(self.wall_s, 1),
            "cpus": os.cpu_count(),
        }


def sched_ms(pid: int) -> dict:
    """CPU time, time spent runnable but waiting for a CPU, and timeslices, summed over a process's threads.

    From /proc/{pid}/task/*/schedstat (the kernel's sched_info): the wait is
    how long the process was ready to run while every CPU was busy elsewhere.
    """
    cpu = wait = slices = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on_cpu, queued, n = (int(v) for v in (task / "schedstat").read_text().split())
        except (FileNotFoundError, ValueError):
            continue  # a thread that ended meanwhile
        cpu, wait, slices = cpu + on_cpu, wait + queued, slices + n
    return {"cpu_ms": cpu / 1e6, "runqueue_wait_ms": wait / 1e6, "slices": slices}


def sched_delta(before: dict, after: dict) -> dict:
    return {key: round(after[key] - before[key], 1) for key in before}


def steal_ms() -> float:
    """CPU time the hypervisor gave to other machines while this one's CPUs wanted it (all CPUs, /proc/stat)."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8]) * TICK_MS


class PerSecond:
    """Each watched process's CPU time and run-queue wait in each whole second of a run, and the machine's steal.

    Read at ``start + k`` for every whole second k; a stall in one second of
    a run can then be set against who waited for a CPU in that second. The
    counters are cumulative, so a late read moves time between neighbouring
    seconds but loses none; ``late_ms`` says how late each read was.
    """

    def __init__(self, watched: dict[str, int], start: float) -> None:
        self.watched, self.start = watched, start
        self.reads: list[tuple[dict[str, dict], float]] = []
        self.late_ms: list[float] = []

    def read(self) -> None:
        """Take one reading now (``run`` takes one at each whole second)."""
        self.reads.append(self._now())

    def _now(self) -> tuple[dict[str, dict], float]:
        found = {}
        for label, pid in self.watched.items():
            try:
                found[label] = sched_ms(pid)
            except FileNotFoundError:
                continue  # gone: left out from here on
        return found, steal_ms()

    async def run(self, seconds: int) -> None:
        for k in range(seconds + 1):
            await asyncio.sleep(max(0.0, self.start + k - time.monotonic()))
            self.late_ms.append(round((time.monotonic() - self.start - k) * 1000, 1))
            self.read()

    def result(self) -> dict:
        """Each label's ``cpu_ms`` and ``wait_ms``, a value per second (None once gone); ``steal_ms``, ``late_ms``."""
        out: dict = {label: {"cpu_ms": [], "wait_ms": []} for label in self.watched}
        steal = []
        for (before, stole), (after, stolen) in zip(self.reads, self.reads[1:], strict=False):
            for label, series in out.items():
                delta = sched_delta(before[label], after[label]) if label in before and label in after else {}
                series["cpu_ms"].append(delta.get("cpu_ms"))  # None: the process was gone
                series["wait_ms"].append(delta.get("runqueue_wait_ms"))
            steal.append(round(stolen - stole, 1))
        return {"processes": out, "steal_ms": steal, "late_ms": self.late_ms}
