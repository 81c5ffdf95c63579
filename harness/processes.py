"""Start real processes for tests and always stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log,
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
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.popen.returncode


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


def worker_argv(*, name: str, concurrency: int = 2, pool: str = "prefork") -> list[str]:
    return [str(VENV_BIN / "celery"), "-A", "workers.catalog", "worker", "-l", "INFO",
            "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
            "--without-mingle", "--without-gossip"]
