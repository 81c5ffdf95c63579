import pytest
from django.db import connection

from harness import amqp, processes
from harness.waiting import wait_until


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker):
    """A real `celery -A workers.catalog worker` process writing into the test database."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    proc = processes.Proc("catalog-worker",
                          processes.worker_argv(name="catalog-test"),
                          processes.base_env(CATALOG_DATABASE_URL=url,
                                             CATALOG_DB_CONN_MAX_AGE="0",
                                             CATALOG_RETRY_BACKOFF_BASE="1",
                                             CATALOG_RETRY_BACKOFF_MAX="2"))
    try:
        wait_until(lambda: " ready." in proc.log() or not proc.alive(), timeout=60,
                   message=lambda: f"worker to start:\n{proc.tail()}")
        assert proc.alive(), proc.tail()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def dlq_empty(worker):
    amqp.drain("catalog.products.dlq")
    yield
    amqp.drain("catalog.products.dlq")
