"""Real server processes for integration tests: Daphne (and Uvicorn) nodes, Celery workers."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from bench.cluster import WORKER_QUIET

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVE = ROOT / "deploy" / "serve"  # the compose file's socket-node command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def database_url() -> str:
    """Return a DATABASE_URL for the test database the test process is using."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        user = db.get("USER") or "root"
        return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def server_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "hearo.settings",
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": settings.REDIS_URL,
            "HEARO_CACHE_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "hearo-test"),
            "HEARO_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "hearo-test"),
            # A test server shares the test database with other tests: it matches
            # only when its test asks (HEARO_INPROCESS_MATCHER=1, or a Celery worker).
            "HEARO_INPROCESS_MATCHER": "0",
            # Every test client joins from 127.0.0.1.
            "HEARO_JOIN_RATE": "1000/m",
            # Browser and interop tests open many sockets from 127.0.0.1 at once.
            "HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS": "100000",
        }
    )
    env.update(extra)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        try:
            self.kill(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")


@contextmanager
def daphne(tmp_path: Path, name: str = "node", **env: str):
    """Run one Daphne node on a free port; yield (port, Proc)."""
    port = free_port()
    args = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "hearo.asgi:application"]
    with _serving(port, Proc(args, server_env(**env), tmp_path / f"{name}.log")) as proc:
        yield port, proc


@contextmanager
def uvicorn(tmp_path: Path, name: str = "uvicorn", **env: str):
    """Run one Uvicorn node on a free port with deploy/serve's flags (production's); yield (port, Proc)."""
    port = free_port()
    # deploy/serve finds the server on PATH, as in the image: this venv's first.
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    args = ["sh", str(SERVE), "uvicorn", "127.0.0.1", str(port)]
    with _serving(port, Proc(args, server_env(PATH=path, **env), tmp_path / f"{name}.log")) as proc:
        yield port, proc


@contextmanager
def _serving(port: int, proc: Proc):
    try:
        wait_for_port(port, proc.proc)
        yield proc
    finally:
        proc.stop()


@contextmanager
def celery_worker(tmp_path: Path, name: str = "worker", **env: str):
    """Run one real Celery worker process (solo pool); yield the Proc once it is ready."""
    args = [str(VENV_BIN / "celery"), "-A", "hearo", "worker", "--pool=solo", "-l", "info", "-n", f"{name}@%h"]
    args += WORKER_QUIET
    proc = Proc(args, server_env(**env), tmp_path / f"{name}.log")
    try:
        deadline = time.monotonic() + 30
        while "ready." not in proc.output():
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{proc.output()}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.stop()
