"""RabbitMQ vhosts for tests and benchmarks (no side effects on import)."""

from __future__ import annotations

import os
import shutil
import subprocess
from urllib.parse import quote, urlsplit, urlunsplit

BASE_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError(
            "tests need `rabbitmqctl` (RabbitMQ on this machine) to create a test vhost; "
            "start RabbitMQ with `rabbitmq-server -detached`"
        )
    return subprocess.run([exe, "-q", *args], check=check, capture_output=True, text=True,
                          timeout=60)


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
