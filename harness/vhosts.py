"""RabbitMQ vhosts for tests and benchmarks (no side effects on import)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from urllib.parse import quote, urlsplit, urlunsplit

BASE_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError(
            "tests need `rabbitmqctl` (RabbitMQ on this machine) to create a test vhost; "
            "start RabbitMQ with `rabbitmq-server -detached`"
        )
    # The CLI is an Erlang node of its own that talks to the broker's: with many tests and
    # benchmarks calling it at once on this machine it fails now and then (exit 64, seen in a
    # full `make test`), while the broker is fine. These calls are idempotent: try again.
    for attempt in range(4):
        out = subprocess.run([exe, "-q", *args], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 or not check:
            return out
        time.sleep(0.5 * 2 ** attempt)
    raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout,
                                        f"{out.stderr.strip()} (4 attempts)")


def vhost_url(vhost: str) -> str:
    parts = urlsplit(BASE_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def vhost_create(vhost: str) -> str:
    user = urlsplit(BASE_URL).username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return vhost_url(vhost)


def vhost_delete(vhost: str) -> None:
    _rabbitmqctl("delete_vhost", vhost, check=False)
