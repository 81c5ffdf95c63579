"""Start real processes for tests and always stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose output goes to tests/artifacts/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the whole process group, and wait until every process of it is gone (a
        ``sh -c`` that did not exec its command dies at once, while the command it started may
        still be shutting down); SIGKILL to what is left after ``timeout``."""
        if self.alive() or self.group_alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.group_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while self.group_alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(1)
        self._log.close()
        return self.popen.returncode

    def group_alive(self) -> bool:
        """Is any process of this one's process group still running (zombies aside)?"""
        self.popen.poll()  # reap our own child
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        out = subprocess.run(["ps", "-o", "stat=", "-g", str(self.popen.pid)],
                             capture_output=True, text=True).stdout.split()
        return any(not stat.startswith("Z") for stat in out)


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(PYTHONUNBUFFERED="1", ADMIN_SECRET_KEY="test-only-not-secret",
               CATALOG_SECRET_KEY="test-only-not-secret",
               # exporters off unless a test gives them a free port (tests run side by side)
               ADMIN_RELAY_METRICS_BIND="", CATALOG_WORKER_METRICS_BIND="",
               AUDIT_WORKER_METRICS_BIND="")
    env.update(overrides)
    return env


def worker_argv(*, name: str, concurrency: int = 2, pool: str | None = None) -> list[str]:
    """The catalog worker's command; ``pool``: Celery's ``-P`` (default: none, so the worker
    runs the pool its settings name, CATALOG_WORKER_POOL: the thread pool of workers/pool.py)."""
    return [str(VENV_BIN / "celery"), "-A", "workers.catalog", "worker", "-l", "INFO",
            *(["-P", pool] if pool else []), "-c", str(concurrency), "-n", f"{name}@%h",
            "--without-mingle", "--without-gossip"]


def descendants(root: int) -> list[tuple[int, int, str]]:
    """(pid, ppid, args) of every process below ``root`` (children, grandchildren, ...)."""
    out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,ppid=,args="], capture_output=True,
                         text=True, check=True).stdout
    fields = [line.split(None, 2) for line in out.splitlines()]
    rows = [(int(f[0]), int(f[1]), f[2]) for f in fields if len(f) == 3]
    found, frontier = [], {root}
    while frontier:
        level = [r for r in rows if r[1] in frontier]
        found += level
        frontier = {r[0] for r in level}
    return found


def celery_worker_main(root: int, app: str = "workers.catalog") -> int | None:
    """The main process of the ``app`` Celery worker below ``root`` (the celery process whose
    parent is not one: its pool children are), or None unless there is exactly one."""
    celery = {pid: ppid for pid, ppid, args in descendants(root)
              if f"bin/celery -A {app} worker" in args}
    mains = [pid for pid, ppid in celery.items() if ppid not in celery]
    return mains[0] if len(mains) == 1 else None
