"""The machine and software the numbers come from."""

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.cluster import ROOT

PACKAGES = ("Django", "channels", "channels-redis", "daphne", "Twisted", "redis", "celery", "psycopg", "websockets")


def _first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _rabbitmq_version() -> str:
    line = _first_line(["rabbitmqctl", "version"])
    return line if line and line[0].isdigit() else "unknown"


def describe(*, command: str, quick: bool, logdir: Path) -> dict:
    dirty = _first_line(["git", "status", "--porcelain", "--untracked-files=no"]) not in ("unknown", "")
    return {
        "command": command,
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in PACKAGES},
        "redis_server": _first_line(["redis-server", "--version"]),
        "postgresql": _first_line(["psql", "--version"]),
        "rabbitmq": _rabbitmq_version(),
        "git_commit": _first_line(["git", "rev-parse", "--short", "HEAD"]) + (" (dirty tree)" if dirty else ""),
        "load_average_start": os.getloadavg(),
        "logdir": str(logdir),
    }
