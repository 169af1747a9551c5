"""Watch the commands a piece of code sends to the shared Redis (MONITOR), told apart by what they name.

Other tests' servers may use the same Redis meanwhile, so a test counts only
the lines that carry keys or arguments unique to it; commands a script runs
show as client ``lua`` and are told apart from the ones a client sent.
"""

import asyncio
from contextlib import asynccontextmanager


@asynccontextmanager
async def redis_monitor(redis_url: str):
    """Yield a list that fills with MONITOR lines while the block runs (and a moment after)."""
    proc = await asyncio.create_subprocess_exec("redis-cli", "-u", redis_url, "monitor", stdout=asyncio.subprocess.PIPE)
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"OK"
    lines: list[str] = []

    async def read() -> None:
        async for line in proc.stdout:
            lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        yield lines
    finally:
        await asyncio.sleep(0.3)  # MONITOR's last lines are on their way
        proc.terminate()
        await proc.wait()
        await reader


def sent(lines: list[str], unique: str) -> list[str]:
    """Return the commands a client sent (not a script's own) whose line names ``unique``."""
    return [line.split("] ", 1)[1] for line in lines if unique in line and " lua]" not in line]


def in_scripts(lines: list[str], unique: str) -> list[str]:
    """Return the commands scripts ran whose line names ``unique``."""
    return [line.split("] ", 1)[1] for line in lines if unique in line and " lua]" in line]
