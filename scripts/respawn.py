"""Run a command and start it again whenever it dies on its own, so that under `make run` a crash
of one process does not take the others down (honcho stops every process as soon as one exits).

    python scripts/respawn.py celery -A workers.catalog worker ...

- A stop asked for (SIGTERM, SIGINT, SIGQUIT, SIGHUP to this process, e.g. honcho's Ctrl-C or
  `kill`) is passed on to the command once; then this process exits with the command's exit code
  and restarts nothing.
- Any other exit (a crash, SIGKILL, an exit code of 0 too: these processes are meant to run for
  ever) is logged on one line and the command is started again after a back-off that doubles from
  1 s up to RESPAWN_MAX_BACKOFF_SECONDS (default 30), and starts again from 1 s once the command
  has run for 60 s.
- The command runs in its own process group (a signal meant for it reaches it exactly once) and is
  killed if this process dies (Linux parent-death signal), so nothing is left orphaned.
- RESPAWN_CRASHED=false makes this a plain `exec` of the command (no supervision): the test
  harness and compose (which has `restart: unless-stopped`) supervise processes themselves.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
STABLE_AFTER_SECONDS = 60.0
PR_SET_PDEATHSIG = 1


def _log(message: str) -> None:
    line = f"respawn: {message}"
    if _json():  # as the process it supervises logs (ADMIN_/CATALOG_LOG_FORMAT)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from common.logs import json_line

        line = json_line(line, logger="respawn", level="WARNING")
    print(line, file=sys.stderr, flush=True)


def _json() -> bool:
    """JSON lines when the supervised command's project logs JSON: the admin's for a command of
    admin_project, else the catalog's (its web app, workers and Flower)."""
    prefix = "ADMIN" if any("admin_project" in arg for arg in sys.argv[1:]) else "CATALOG"
    return os.environ.get(f"{prefix}_LOG_FORMAT", "plain").strip().lower() == "json"


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when this supervisor dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _env_true(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


def supervise(argv: list[str], max_backoff: float) -> int:
    stopping = threading.Event()
    child: subprocess.Popen | None = None
    stop_signal: list[int] = []

    def on_stop(signum, _frame):
        if not stop_signal:
            stop_signal.append(signum)
        stopping.set()
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)

    name = os.path.basename(argv[0])
    backoff = 1.0
    while True:
        started = time.monotonic()
        try:
            child = subprocess.Popen(argv, process_group=0, preexec_fn=_die_with_parent)
        except OSError as exc:
            _log(f"cannot start {name}: {exc}")
            return 127
        if stopping.is_set():  # a stop came while it was starting
            os.killpg(child.pid, stop_signal[0])
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover (PEP 475 retries for us)
                continue
        if stopping.is_set():
            return code if code >= 0 else 128 - code
        ran = time.monotonic() - started
        if ran >= STABLE_AFTER_SECONDS:
            backoff = 1.0
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        _log(f"{name} (pid {child.pid}) died with {how} after {ran:.1f} s; "
             f"starting it again in {backoff:.0f} s")
        if stopping.wait(backoff):
            return code if code >= 0 else 128 - code
        backoff = min(backoff * 2, max_backoff)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python scripts/respawn.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    if not _env_true("RESPAWN_CRASHED", default=True):
        os.execvp(argv[0], argv)
    try:
        max_backoff = float(os.environ.get("RESPAWN_MAX_BACKOFF_SECONDS") or 30)
    except ValueError:
        print("RESPAWN_MAX_BACKOFF_SECONDS must be a number of seconds", file=sys.stderr)
        return 2
    return supervise(argv, max(1.0, max_backoff))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
