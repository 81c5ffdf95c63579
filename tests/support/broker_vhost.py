"""pytest plugin (``-p tests.support.broker_vhost``): every test session gets its own RabbitMQ
vhost, so tests never touch the queues of a running ``make run`` stack, and a session leaves
nothing behind.

It runs at import time, i.e. before pytest-django loads Django settings, so CELERY_BROKER_URL
(read by both projects' settings and inherited by every process a test spawns) already points
at the session's vhost."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
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


SESSION_VHOST = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
os.environ["CELERY_BROKER_URL"] = vhost_create(SESSION_VHOST)
os.environ["TEST_SESSION_VHOST"] = SESSION_VHOST


def pytest_unconfigure(config):
    vhost_delete(SESSION_VHOST)
