"""Where a node spends its time: py-spy samples, summarised (py-spy is optional, profiling only)."""

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from bench.cluster import VENV_BIN

PY_SPY = VENV_BIN / "py-spy"


def _frame(text: str) -> str:
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 2)[-2:][-1]})" if where else name


def summarise(raw: str, top: int = 40) -> dict:
    """Return the hottest frames, self and inclusive, as percentages of all samples."""
    own, incl, total = Counter(), Counter(), 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n, frames = int(count), [_frame(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n

    def pct(counter: Counter) -> list:
        return [[frame, round(100 * n / total, 1)] for frame, n in counter.most_common(top)]

    return {"samples": total, "self": pct(own), "inclusive": pct(incl)} if total else {"samples": 0}


async def record(pid: int, seconds: float) -> dict:
    """Sample a process for ``seconds`` (non-blocking, 100 Hz) and summarise it."""
    if not PY_SPY.exists():
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        args = ["record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "--nonblocking", "-f", "raw"]
        proc = await asyncio.create_subprocess_exec(
            str(PY_SPY), *args, "-o", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if not out.exists():
            return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
        return summarise(out.read_text())
