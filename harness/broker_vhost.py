"""pytest plugin (``-p harness.broker_vhost``): every test session gets its own RabbitMQ
vhost, so tests never touch the queues of a running ``make run`` stack, and a session leaves
nothing behind.

It runs at import time, i.e. before pytest-django loads Django settings, so CELERY_BROKER_URL
(read by both projects' settings and inherited by every process a test spawns) already points
at the session's vhost."""

import os
import uuid

from harness.vhosts import vhost_create, vhost_delete

SESSION_VHOST = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
os.environ["CELERY_BROKER_URL"] = vhost_create(SESSION_VHOST)
os.environ["TEST_SESSION_VHOST"] = SESSION_VHOST


def pytest_unconfigure(config):
    vhost_delete(SESSION_VHOST)
