"""A catalog database outage longer than the whole retry budget (issue: "transient failures
never park"): the worker pauses, holds what it has, parks nothing, and catches up by itself."""

import re

import psycopg2
import pytest
import requests
from django.db import connection, connections

from harness import amqp, processes
from harness.waiting import wait_until

from .events import event
from .test_worker import publish_raw, row, task_body

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def admin_sql(sql: str) -> None:
    db = connection.settings_dict
    with psycopg2.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                          user=db["USER"], dbname="postgres") as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)


def gauge(port: int, name: str) -> float:
    """The worker exporter's sample of ``name`` (0 if absent or unreachable)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return 0.0
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def delayed() -> int:
    """``catalog_subscriber_delayed_messages{subscriber="catalog"}`` as the catalog's /metrics
    computes it, from the broker."""
    from catalog_project.catalog.queues import delayed_messages

    with amqp.broker_connection() as conn:
        return delayed_messages(conn)["catalog"]


def test_an_outage_longer_than_the_retry_budget_parks_nothing(tmp_path):
    db = connection.settings_dict
    name = db["NAME"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    # retry budget: 2 retries of 1-2 s; the outage below lasts far longer; hold 4 s per round
    port = processes.free_port()
    worker = processes.Proc("worker-outage", processes.worker_argv(name="outage",
                                                                   concurrency=2),
                            processes.base_env(CATALOG_DATABASE_URL=url,
                                               CATALOG_RETRY_MAX="2",
                                               CATALOG_RETRY_BACKOFF_BASE="1",
                                               CATALOG_RETRY_BACKOFF_MAX="2",
                                               CATALOG_PAUSE_HOLD_SECONDS="4",
                                               CATALOG_DB_CONN_MAX_AGE="60",
                                               CATALOG_WORKER_METRICS_BIND=f"127.0.0.1:{port}"))
    ids = list(range(7000, 7040))
    try:
        wait_until(lambda: " ready." in worker.log() or not worker.alive(), timeout=60,
                   message=lambda: worker.tail())
        amqp.drain("catalog.products.dlq")
        connections.close_all()
        try:
            admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
            for pid in ids:
                publish_raw(task_body([event(pid, 1)]))
            wait_until(lambda: "paused: the catalog database is unreachable" in worker.log(),
                       timeout=30, message=lambda: worker.tail())
            # what it holds is in sight: unacked on the worker, then round the delay queue
            wait_until(lambda: gauge(port, "catalog_messages_in_flight") >= 1, timeout=30,
                       message="catalog_messages_in_flight while paused")
            assert gauge(port, "catalog_paused") == 1
            wait_until(lambda: delayed() >= 1, timeout=30, interval=0.05,
                       message="held messages counted in catalog_subscriber_delayed_messages")
            # far past the retry budget (~5 s): still nothing parked, the worker still there
            wait_until(lambda: worker.log().count("transient error") >= 3, timeout=60,
                       message=lambda: worker.tail())
            assert amqp.drain("catalog.products.dlq") == []
            assert worker.alive()
        finally:
            admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        wait_until(lambda: all(row(pid) for pid in ids), timeout=60,
                   message=lambda: f"catch-up after the outage:\n{worker.tail()}")
        assert amqp.drain("catalog.products.dlq") == []
        log = worker.log()
        assert log.count("paused: the catalog database") == 1, log[-3000:]
        assert "resumed: the catalog database answers again" in log
    finally:
        worker.stop()
