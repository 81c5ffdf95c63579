"""The catalog worker against a black-holed catalog database (harness/blackhole.py: no RST, no
FIN): the write's wait is bounded, the message is retried, never acked unapplied nor parked, and
it lands once the path forwards again. On a vhost of its own (no other worker competes)."""

import uuid

import pytest
from django.db import connection
from kombu import Exchange

from harness import amqp, processes, vhosts
from harness.blackhole import BlackholeProxy
from harness.waiting import wait_until
from product_events import contract

from .events import event
from .test_worker import row, task_body

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def test_a_write_on_a_black_holed_database_is_retried_and_lands():
    vhost = f"blackhole-{uuid.uuid4().hex[:8]}"
    url = vhosts.vhost_create(vhost)
    db = connection.settings_dict
    try:
        with amqp.broker_connection_to(url) as conn:
            Exchange(contract.EXCHANGE, "topic", durable=True)(conn.default_channel).declare()
        with BlackholeProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))) as proxy:
            env = processes.base_env(
                CELERY_BROKER_URL=url, CATALOG_DB_CONN_MAX_AGE="60",
                CATALOG_DATABASE_URL=f"postgres://{db['USER']}@{proxy.host}:{proxy.port}/"
                                     f"{db['NAME']}",
                CATALOG_DB_ANSWER_TIMEOUT_SECONDS="3", CATALOG_RETRY_BACKOFF_BASE="1",
                CATALOG_RETRY_BACKOFF_MAX="2")
            worker = processes.Proc("worker-blackhole", processes.worker_argv(
                name="blackhole", concurrency=1), env)
            try:
                wait_until(lambda: " ready." in worker.log() or not worker.alive(), timeout=60,
                           message=lambda: worker.tail())
                publish(url, 501)
                wait_until(lambda: row(501), timeout=30, message=lambda: worker.tail())
                proxy.blackhole()
                publish(url, 502)
                wait_until(lambda: "no answer from the database server" in worker.log(),
                           timeout=40, message=lambda: f"a bounded wait:\n{worker.tail()}")
                assert row(502) is None and worker.alive()
                proxy.forward()
                wait_until(lambda: row(502), timeout=60,
                           message=lambda: f"the retried write:\n{worker.tail()}")
                assert amqp.drain("catalog.products.dlq", url=url) == []
            finally:
                worker.stop()
    finally:
        vhosts.vhost_delete(vhost)


def publish(url: str, pid: int) -> None:
    task_id = str(uuid.uuid4())
    with amqp.broker_connection_to(url) as conn:
        conn.Producer().publish(
            task_body([event(pid, 1)]), exchange=contract.EXCHANGE, routing_key="product.created",
            headers={"lang": "py", "task": contract.TASK_APPLY_PRODUCT_EVENTS, "id": task_id,
                     "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
                     "eta": None, "expires": None},
            content_type="application/json", content_encoding="utf-8", delivery_mode=2,
            mandatory=True, retry=False)
