"""A catalog database outage longer than the whole retry budget (issue: "transient failures
never park"): the worker pauses, holds what it has, parks nothing, and catches up by itself."""


import psycopg2
import pytest
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


def test_an_outage_longer_than_the_retry_budget_parks_nothing(tmp_path):
    db = connection.settings_dict
    name = db["NAME"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    # retry budget: 2 retries of 1-2 s; the outage below lasts far longer; hold 4 s per round
    worker = processes.Proc("worker-outage", processes.worker_argv(name="outage",
                                                                   concurrency=2),
                            processes.base_env(CATALOG_DATABASE_URL=url,
                                               CATALOG_RETRY_MAX="2",
                                               CATALOG_RETRY_BACKOFF_BASE="1",
                                               CATALOG_RETRY_BACKOFF_MAX="2",
                                               CATALOG_PAUSE_HOLD_SECONDS="4",
                                               CATALOG_DB_CONN_MAX_AGE="60"))
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
