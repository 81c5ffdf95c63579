"""The broker topology the worker declares, and what it does when RabbitMQ disagrees."""

import os
import subprocess
import uuid

import pytest
from kombu import Connection, Queue

from catalog_project.topology import DELIVERY_LIMIT
from harness import processes
from harness.vhosts import vhost_create, vhost_delete

pytestmark = pytest.mark.broker


def rabbitmqctl(*args):
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def test_declared_topology(worker):
    vhost = os.environ["TEST_SESSION_VHOST"]
    queues = {line.split("\t")[0]: line.split("\t")[1:]
              for line in rabbitmqctl("list_queues", "-p", vhost, "name", "type",
                                      "arguments").splitlines()}
    assert queues["catalog.products"][0] == "quorum"
    args = queues["catalog.products"][1]
    for expected in (f'"x-delivery-limit",{DELIVERY_LIMIT}',
                     '"x-dead-letter-exchange","catalog.dlx"',
                     '"x-dead-letter-strategy","at-least-once"'):
        assert expected in args
    assert queues["catalog.products.dlq"][0] == "quorum"

    bindings = {tuple(line.split("\t")[:3])
                for line in rabbitmqctl("list_bindings", "-p", vhost, "source_name",
                                        "destination_name", "routing_key").splitlines()}
    assert ("products", "catalog.products", "product.#") in bindings
    assert ("catalog", "catalog.products", "catalog.products") in bindings
    assert ("catalog.dlx", "catalog.products.dlq", "catalog.products.dlq") in bindings
    # retries wait in the catalog's own delay queues and come back only through its private
    # exchange; Celery's shared `celery_delayed_*` queues are not used (nor declared)
    assert ("catalog_celery_delayed_delivery", "catalog", "#.catalog.products") in bindings
    assert not any(dst == "products" for src, dst, _ in bindings)
    assert "catalog_celery_delayed_0" in queues and "catalog_celery_delayed_27" in queues
    assert not [name for name in queues if name.startswith("celery_delayed")]
    # remote control through the catalog's own pidbox exchange, not the shared celery.pidbox
    assert any(dst.endswith(".catalog.pidbox") and src == "catalog.pidbox"
               for src, dst, _ in bindings)
    assert not [name for name in queues if name.endswith(".celery.pidbox")]


def test_worker_stops_with_a_clear_message_on_a_mismatched_queue():
    vhost = f"mismatch-{uuid.uuid4().hex[:8]}"
    url = vhost_create(vhost)
    try:
        with Connection(url) as conn:  # somebody created the queue as a classic queue
            Queue("catalog.products", durable=True)(conn.default_channel).declare()
        result = subprocess.run(processes.worker_argv(name="mismatch", concurrency=1),
                                cwd=processes.REPO, capture_output=True, text=True, timeout=120,
                                env=processes.base_env(CELERY_BROKER_URL=url))
        out = result.stdout + result.stderr
        assert result.returncode != 0
        assert "RabbitMQ refused queue 'catalog.products'" in out
        assert "inequivalent arg" in out
        assert "manage.py topology upgrade --subscriber catalog" in out
        assert "Traceback" not in out
    finally:
        vhost_delete(vhost)
