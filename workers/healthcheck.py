"""The workers' health check (compose.yaml): ``python -m workers.healthcheck catalog`` exits 0
only if this host's worker of that subscriber answers *and* consumes its queue. A ping alone
stays green for a worker whose consumer was cancelled (``celery control cancel_consumer``).

Bounded: a broker that does not read (an alarm blocks the inspect request's publish) makes it
exit 1 after the inspect timeout plus ``CATALOG_BROKER_CONNECT_TIMEOUT`` and
``CATALOG_BROKER_IO_TIMEOUT``, never hang."""

from __future__ import annotations

import glob
import importlib
import signal
import socket
import sys
import tempfile

INSPECT_TIMEOUT = 5.0


class _Deadline(Exception):
    pass


def _deadline(*_args):
    raise _Deadline


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m workers.healthcheck <subscriber: catalog, audit, ...>",
              file=sys.stderr)
        return 2
    name = argv[1]
    app = importlib.import_module(f"workers.{name}").app
    node = f"{name}@{socket.gethostname()}"
    want = app.subscriber.subscription.queue_name
    from django.conf import settings

    io = settings.CATALOG_BROKER_IO_TIMEOUT
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         "read_timeout": io, "write_timeout": io}
    bound = INSPECT_TIMEOUT + settings.CATALOG_BROKER_CONNECT_TIMEOUT + io
    signal.signal(signal.SIGALRM, _deadline)
    signal.setitimer(signal.ITIMER_REAL, bound)
    try:
        replies = app.control.inspect(destination=[node],
                                      timeout=INSPECT_TIMEOUT).active_queues() or {}
    except _Deadline:
        print(f"{node}: no answer within {bound:.0f}s (broker blocked?)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - any broker error is "unhealthy", said in a line
        print(f"{node}: broker error ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if node not in replies:
        print(f"{node}: no answer", file=sys.stderr)
        return 1
    consuming = sorted(q["name"] for q in replies[node])
    if want not in consuming:
        print(f"{node}: answers but does not consume {want} (consumes {consuming})",
              file=sys.stderr)
        return 1
    paused = _paused(name)
    if paused:  # alive and consuming, holding its messages while its database is away
        what = "refuses writes" if paused == "refused" else "does not answer"
        print(f"{node}: consuming {want}; paused: its database {what} (messages wait in the "
              "queue; it resumes by itself)")
        return 0
    print(f"{node}: consuming {want}")
    return 0


def _paused(name: str) -> str | None:
    """Why this host's worker of ``name`` is paused, from its marker (workers/handling.py), or
    None. Only a marker whose process is a running worker of that subscriber counts: a worker
    killed while paused leaves its marker behind until the next one starts."""
    for path in glob.glob(f"{tempfile.gettempdir()}/{name}-worker-*.paused"):
        pid = path.rsplit("-", 1)[1].split(".")[0]
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                running = f"workers.{name}".encode() in f.read()
            with open(path) as f:
                reason = (f.read().split() or ["unreachable"])[0]
        except OSError:
            continue
        if running:
            return reason
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
