"""The workers' health check (compose.yaml): ``python -m workers.healthcheck catalog`` exits 0
only if this host's worker of that subscriber answers *and* consumes its queue. A ping alone
stays green for a worker whose consumer was cancelled (``celery control cancel_consumer``)."""

from __future__ import annotations

import importlib
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m workers.healthcheck <catalog|audit>", file=sys.stderr)
        return 2
    name = argv[1]
    app = importlib.import_module(f"workers.{name}").app
    node = f"{name}@{socket.gethostname()}"
    want = app.subscriber.subscription.queue_name
    replies = app.control.inspect(destination=[node], timeout=5).active_queues() or {}
    if node not in replies:
        print(f"{node}: no answer", file=sys.stderr)
        return 1
    consuming = sorted(q["name"] for q in replies[node])
    if want not in consuming:
        print(f"{node}: answers but does not consume {want} (consumes {consuming})",
              file=sys.stderr)
        return 1
    print(f"{node}: consuming {want}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
