"""Outages of the catalog database longer than the whole retry budget, of every shape (issue:
"transient failures never park"): unreachable, read-only, a table locked past the statement
timeout. The worker pauses, holds what it has, parks nothing, says so once each way, and
catches up by itself. And what a pause must not leave behind: a stale paused gauge after a pool
process died while paused, a stale marker after the whole worker died."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
import requests
from django.db import connection, connections

from harness import amqp, processes
from harness.vhosts import vhost_create, vhost_delete
from harness.waiting import wait_until

from .events import event, parsed
from .test_worker import row, task_body

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def admin_sql(sql: str, dbname: str = "postgres") -> None:
    db = connection.settings_dict
    with psycopg2.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                          user=db["USER"], dbname=dbname) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)


def terminate_backends(name: str) -> None:
    admin_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")


def gauge(port: int, name: str) -> float | None:
    """The worker exporter's sample of ``name`` (None if absent or unreachable)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def delayed(url: str) -> int:
    """``catalog_subscriber_delayed_messages{subscriber="catalog"}`` as the catalog's /metrics
    computes it, from the broker."""
    from catalog_project.catalog.queues import delayed_messages

    with amqp.broker_connection_to(url) as conn:
        return delayed_messages(conn)["catalog"]


def publish(worker, events) -> None:
    """A task message of ``events`` on the worker's own vhost."""
    from kombu import Exchange

    from product_events import contract

    with amqp.broker_connection_to(worker.url) as conn:
        conn.Producer().publish(task_body(events),
                                exchange=Exchange(contract.EXCHANGE, "topic", durable=True),
                                routing_key="product.created", content_type="application/json",
                                content_encoding="utf-8", delivery_mode=2, retry=False,
                                headers={"lang": "py", "task": contract.TASK_APPLY_PRODUCT_EVENTS,
                                         "id": str(uuid.uuid4())})


def parked(worker) -> list:
    return amqp.drain("catalog.products.dlq", url=worker.url)


def db_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/" \
           f"{db['NAME']}"


def start_worker(name: str, port: int, vhost: str | None = None, **env) -> processes.Proc:
    """A worker of its own on a vhost of its own (the session's worker consumes the session's):
    ``proc.url`` is its broker, ``proc.vhost`` its vhost (deleted by ``stop_worker``)."""
    vhost = vhost or f"outage-{uuid.uuid4().hex[:8]}"
    url = vhost_create(vhost)
    # retry budget: 2 rounds; every outage below lasts far longer; hold 4 s per round
    settings = {"CATALOG_DATABASE_URL": db_url(), "CELERY_BROKER_URL": url,
                "CATALOG_RETRY_MAX": "2",
                "CATALOG_RETRY_BACKOFF_BASE": "1", "CATALOG_RETRY_BACKOFF_MAX": "2",
                "CATALOG_PAUSE_HOLD_SECONDS": "4", "CATALOG_DB_CONN_MAX_AGE": "60",
                "CATALOG_WORKER_METRICS_BIND": f"127.0.0.1:{port}"} | env
    proc = processes.Proc(f"worker-{name}", processes.worker_argv(name=name, concurrency=2),
                          processes.base_env(**settings))
    proc.url, proc.vhost = url, vhost
    wait_until(lambda: " ready." in proc.log() or not proc.alive(), timeout=60,
               message=lambda: proc.tail())
    assert proc.alive(), proc.tail()
    return proc


def stop_worker(proc, keep_vhost: bool = False) -> None:
    proc.stop()
    if not keep_vhost:
        vhost_delete(proc.vhost)


class Unreachable:
    what = "is unreachable"

    def __init__(self, name):
        self.name = name

    def begin(self):
        admin_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        terminate_backends(self.name)

    def end(self):
        admin_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


class ReadOnly(Unreachable):
    """A standby, or a primary mid-failover: reads work, every write is refused (25006)."""

    what = "refuses writes"

    def begin(self):
        admin_sql(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on')
        terminate_backends(self.name)

    def end(self):
        admin_sql(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')
        terminate_backends(self.name)


class Locked(Unreachable):
    """A migration or VACUUM FULL holding the table: every write hits the statement timeout."""

    what = "refuses writes"
    env = {"CATALOG_DB_STATEMENT_TIMEOUT_SECONDS": "1"}

    def begin(self):
        db = connection.settings_dict
        self.holder = psycopg2.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                                       user=db["USER"], dbname=self.name)
        with self.holder.cursor() as cur:
            cur.execute("LOCK TABLE catalog_product IN ACCESS EXCLUSIVE MODE")

    def end(self):
        self.holder.rollback()
        self.holder.close()


@pytest.mark.parametrize("shape", [Unreachable, ReadOnly, Locked])
def test_an_outage_longer_than_the_retry_budget_parks_nothing(shape):
    name = connection.settings_dict["NAME"]
    outage = shape(name)
    port = processes.free_port()
    worker = start_worker(f"outage-{shape.__name__.lower()}", port,
                          **getattr(shape, "env", {}))
    ids = list(range(7000, 7040))
    try:
        connections.close_all()
        try:
            outage.begin()
            for pid in ids:
                publish(worker, [event(pid, 1)])
            wait_until(lambda: f"paused: the catalog database {outage.what}" in worker.log(),
                       timeout=30, message=lambda: worker.tail())
            # what it holds is in sight: unacked on the worker, then round the delay queue
            wait_until(lambda: (gauge(port, "catalog_messages_in_flight") or 0) >= 1,
                       timeout=30, message="catalog_messages_in_flight while paused")
            assert gauge(port, "catalog_paused") == 1
            wait_until(lambda: delayed(worker.url) >= 1, timeout=30, interval=0.05,
                       message="held messages counted in catalog_subscriber_delayed_messages")
            # far past the retry budget (2 rounds): still nothing parked, the worker still there
            wait_until(lambda: worker.log().count("transient error") >= 3, timeout=60,
                       message=lambda: worker.tail())
            assert parked(worker) == []
            assert worker.alive()
        finally:
            outage.end()
        wait_until(lambda: all(row(pid) for pid in ids), timeout=30,
                   message=lambda: f"catch-up within 30 s of the end:\n{worker.tail()}")
        assert parked(worker) == []
        log = worker.log()
        assert log.count("paused: the catalog database") == 1, log[-3000:]
        assert log.count("resumed: the catalog database takes writes again") == 1, log[-3000:]
        assert gauge(port, "catalog_paused") == 0
    finally:
        stop_worker(worker)


def test_rounds_past_the_retry_max_are_errors_and_still_not_parked():
    name = connection.settings_dict["NAME"]
    port = processes.free_port()
    worker = start_worker("rounds", port, CATALOG_RETRY_MAX="1", CATALOG_PAUSE_HOLD_SECONDS="1")
    outage = Unreachable(name)
    try:
        connections.close_all()
        try:
            outage.begin()
            publish(worker, [event(7050, 1)])
            wait_until(lambda: "ERROR workers.handling" in worker.log()
                       and "round 2 through the delay queue" in worker.log(), timeout=30,
                       message=lambda: worker.tail())
            assert parked(worker) == []
        finally:
            outage.end()
        wait_until(lambda: row(7050), timeout=30, message=lambda: worker.tail())
    finally:
        stop_worker(worker)


def test_a_pool_process_killed_while_paused_leaves_no_stale_paused_gauge():
    """prefork: the process that set the pause dies; once the database is back the worker
    resumes and its gauge says so (a pool process's own metrics file would have kept 1)."""
    name = connection.settings_dict["NAME"]
    port = processes.free_port()
    worker = start_worker("paused-kill", port, CATALOG_WORKER_POOL="prefork")
    outage = Unreachable(name)
    try:
        connections.close_all()
        try:
            outage.begin()
            for pid in (7100, 7101):
                publish(worker, [event(pid, 1)])
            wait_until(lambda: gauge(port, "catalog_paused") == 1, timeout=30,
                       message=lambda: worker.tail())
            for pid, ppid, _args in processes.descendants(worker.pid):
                if ppid == worker.pid:
                    os.kill(pid, signal.SIGKILL)
        finally:
            outage.end()
        publish(worker, [event(7102, 1)])
        wait_until(lambda: all(row(pid) for pid in (7100, 7101, 7102)), timeout=30,
                   message=lambda: worker.tail())
        wait_until(lambda: gauge(port, "catalog_paused") == 0, timeout=10,
                   message=lambda: f"catalog_paused back to 0\n{worker.tail()}")
    finally:
        stop_worker(worker)


def test_a_worker_killed_while_paused_leaves_no_stale_pause_behind():
    """The marker of a worker SIGKILLed while paused: the next worker removes it when it starts,
    and the health check never takes a dead worker's marker for its worker's pause."""
    import tempfile

    name = connection.settings_dict["NAME"]
    port = processes.free_port()
    outage = Unreachable(name)
    worker = start_worker("paused-dead", port)
    try:
        connections.close_all()
        try:
            outage.begin()
            publish(worker, [event(7200, 1)])
            wait_until(lambda: gauge(port, "catalog_paused") == 1, timeout=30,
                       message=lambda: worker.tail())
            marker = f"{tempfile.gettempdir()}/catalog-worker-{worker.pid}.paused"
            assert os.path.exists(marker)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.popen.wait(10)
        finally:
            outage.end()
        stop_worker(worker, keep_vhost=True)
        # the next one, named as the health check looks for it on this host
        worker = start_worker("catalog", port, vhost=worker.vhost)
        assert not os.path.exists(marker)
        wait_until(lambda: row(7200), timeout=30, message=lambda: worker.tail())
        assert gauge(port, "catalog_paused") == 0
        # a marker a dead worker left (as if the new one had not cleaned it yet)
        with open(marker, "w") as f:
            f.write("unreachable")
        try:
            check = subprocess.run([sys.executable, "-m", "workers.healthcheck", "catalog"],
                                   env=processes.base_env(CATALOG_DATABASE_URL=db_url(),
                                                          CELERY_BROKER_URL=worker.url),
                                   capture_output=True, text=True, timeout=60,
                                   cwd=processes.REPO)
        finally:
            os.unlink(marker)
        assert check.returncode == 0, check
        assert "consuming catalog.products" in check.stdout
        assert "paused" not in check.stdout + check.stderr
    finally:
        stop_worker(worker)


def test_a_pool_that_cannot_hold_messages_is_refused_with_a_clear_error():
    proc = subprocess.run(processes.worker_argv(name=f"solo-{uuid.uuid4().hex[:6]}"),
                          env=processes.base_env(CATALOG_DATABASE_URL=db_url(),
                                                 CATALOG_WORKER_POOL="solo"),
                          capture_output=True, text=True, timeout=60, cwd=processes.REPO)
    assert proc.returncode != 0
    assert "CATALOG_WORKER_POOL=solo: not supported" in proc.stderr + proc.stdout


def test_what_is_about_the_database_is_transient_and_what_is_about_the_values_is_not():
    """``workers.handling.transient`` on the errors the real database raises."""
    from django.db import IntegrityError, OperationalError

    from catalog_project.catalog.services import product_events_apply
    from workers.errors import transient

    def raised(sql):
        with pytest.raises(Exception) as info, connection.cursor() as cur:
            cur.execute(sql)
        return info.value

    assert not transient(raised("SELECT 1/0"))                              # 22012
    assert not transient(raised("SELECT 'abc'::int"))                       # 22P02
    assert transient(raised("SELECT * FROM no_such_table"))                 # 42P01
    # 23502: no event carries a null, so a NOT NULL column the write leaves out is a migration
    # deployed ahead of the code (an outsider's finding: parked, then parked again by every
    # anti-entropy check); 23505 (a unique violation) stays a value the database refuses
    assert transient(raised("INSERT INTO catalog_product (id) VALUES (1)"))
    assert not transient(raised("CREATE TEMP TABLE u (k int UNIQUE); "
                                "INSERT INTO u VALUES (1), (1)"))
    assert transient(raised("SET TRANSACTION READ ONLY; "
                            "INSERT INTO catalog_product (id) VALUES (1)"))  # 25006
    assert transient(raised("SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)"))  # 57014
    assert transient(OperationalError("server closed the connection unexpectedly"))
    assert not transient(IntegrityError("no sqlstate"))  # a driver-side error about a value
    assert not transient(KeyError("title"))             # a bug in apply: not the database
    # a value too long, as the catalog's own write raises it (raw cursor: psycopg2's class)
    (ev,) = parsed(event(7300, 1))
    too_long = ev._replace(data=ev.data | {"title": "x" * 300})
    with pytest.raises(Exception) as info:
        product_events_apply(events=[too_long])
    assert not transient(info.value), repr(info.value)


def test_an_outage_that_comes_back_within_a_minute_is_logged_once(monkeypatch, caplog):
    """A lock taken and released again and again, or deadlocks one after another, paused and
    resumed the worker many times in a minute, with a pair of log lines each time (34 in 30 s
    in an outsider's run). A pause within ``RELAPSE_SECONDS`` of the last resume is the same
    outage: not logged, nor its resume, unless it lasts that long; the marker (the gauge) still
    follows every pause."""
    import logging
    import types

    from workers import handling

    sub = types.SimpleNamespace(name=f"relapse{uuid.uuid4().hex[:6]}")
    monkeypatch.setattr(handling, "_last_resume", -1e9)
    monkeypatch.setattr(handling, "_paused_here", False)
    monkeypatch.setattr(handling, "RELAPSE_SECONDS", 0.5)
    caplog.set_level(logging.INFO, logger="workers.handling")
    err = RuntimeError("lock timeout")

    def lines(word):
        return [r for r in caplog.records if r.getMessage().startswith(word)]

    try:
        handling.pause_begin(sub, err, reachable=True)
        assert handling.pause_state(sub) == "refused"
        handling.pause_end(sub)
        for _ in range(5):  # the same outage, over and over: silent
            handling.pause_begin(sub, err, reachable=True)
            assert handling.pause_state(sub) == "refused"
            handling.pause_end(sub)
            assert handling.pause_state(sub) is None
        assert len(lines("paused: ")) == 1 and len(lines("resumed: ")) == 1
        assert len(lines("resumed again: ")) == 5
        # a relapse that lasts: logged once it has lasted RELAPSE_SECONDS, its resume too
        handling.pause_begin(sub, err, reachable=False)
        time.sleep(0.6)
        handling.pause_begin(sub, err, reachable=False)
        handling.pause_begin(sub, err, reachable=False)
        assert len(lines("paused: ")) == 2 and handling.pause_state(sub) == "unreachable"
        handling.pause_end(sub)
        assert len(lines("resumed: ")) == 2
        # a new outage after a quiet RELAPSE_SECONDS: logged at once
        time.sleep(0.6)
        handling.pause_begin(sub, err, reachable=True)
        assert len(lines("paused: ")) == 3
        handling.pause_end(sub)
        assert len(lines("resumed: ")) == 3
    finally:
        handling.pause_end_quietly(sub)
