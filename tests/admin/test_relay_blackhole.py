"""The relay against a black-holed admin database (a TCP proxy that stops forwarding without
closing anything: no RST, no FIN, as a network fault or a stuck failover): every wait is bounded
(common/postgresql's answer deadline), it resumes by itself, and SIGTERM ends it promptly."""

import json
import signal
import sys
import time
import uuid
from decimal import Decimal

import pytest
from django.db import connection

from admin_project.outbox.models import OutboxEvent
from admin_project.products import services
from harness import amqp, processes
from harness.blackhole import BlackholeProxy
from harness.waiting import wait_until
from product_events import contract

from .conftest import exchange_declare

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def pending():
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()


@pytest.fixture
def answer_timeout():
    return "3"


@pytest.fixture
def relay_through_proxy(tmp_path, answer_timeout):
    exchange_declare()
    spy = f"spy-{uuid.uuid4().hex[:8]}"
    amqp.spy_queue(spy, contract.EXCHANGE, contract.ROUTING_PATTERN_ALL)
    db = connection.settings_dict
    with BlackholeProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))) as proxy:
        url = f"postgres://{db['USER']}@{proxy.host}:{proxy.port}/{db['NAME']}"
        proc = processes.Proc("relay-blackhole", [sys.executable, "admin_project/manage.py",
                                                  "relay"],
                              processes.base_env(ADMIN_DATABASE_URL=url,
                                                 ADMIN_DB_ANSWER_TIMEOUT_SECONDS=answer_timeout,
                                                 ADMIN_RELAY_MAX_BACKOFF_SECONDS="1",
                                                 ADMIN_RELAY_STOP_GRACE_SECONDS="4",
                                                 ADMIN_RELAY_HEARTBEAT_FILE=str(
                                                     tmp_path / "hb")))
        try:
            wait_until(lambda: "relay started" in proc.log() or not proc.alive(), timeout=30,
                       message=lambda: proc.tail())
            yield proxy, proc, spy, tmp_path / "hb"
        finally:
            proc.stop()
            amqp.queue_delete(spy)


def test_a_black_holed_database_is_noticed_and_left_behind_by_itself(relay_through_proxy):
    proxy, proc, spy, _hb = relay_through_proxy
    services.product_create(title="before", price=Decimal("1.00"))
    wait_until(lambda: pending() == 0, timeout=20, message=lambda: proc.tail())
    proxy.blackhole()
    for i in range(3):
        services.product_create(title=f"during {i}", price=Decimal("1.00"))
    wait_until(lambda: "no answer from the database server within 3s" in proc.log(),
               timeout=30, message=lambda: f"the relay to give up on the wait:\n{proc.tail()}")
    assert proc.alive() and pending() == 3
    proxy.forward()
    wait_until(lambda: pending() == 0, timeout=30,
               message=lambda: f"the relay to resume:\n{proc.tail()}")
    events = [e for m in amqp.drain(spy) for e in json.loads(m.body)[1]["events"]]
    assert len({e["event_id"] for e in events}) == 4


@pytest.mark.parametrize("answer_timeout", ["60"])  # far longer than the stop grace
def test_sigterm_ends_a_relay_blocked_on_a_black_holed_database(relay_through_proxy):
    proxy, proc, _spy, heartbeat = relay_through_proxy
    proxy.blackhole()
    services.product_create(title="stuck", price=Decimal("1.00"))
    # blocked: the loop stopped going round (its heartbeat file ages)
    wait_until(lambda: time.time() - float(heartbeat.read_text()) > 3, timeout=30,
               message=lambda: proc.tail())
    started = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: not proc.alive(), timeout=15, message=lambda: proc.tail())
    took = time.monotonic() - started
    assert took < 4 + 3, f"SIGTERM took {took:.1f}s"
    assert "did not stop within 4s" in proc.log(), proc.tail()
    assert proc.popen.returncode == 1
    proxy.forward()
    assert pending() == 1  # its claim was rolled back: the event waits for the next relay


def test_every_connection_carries_the_bounds(db):
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        (statement,) = cur.fetchone()
        cur.execute("SHOW idle_in_transaction_session_timeout")
        (idle,) = cur.fetchone()
    assert (statement, idle) == ("30s", "1min")
    dsn = connection.connection.get_dsn_parameters()  # what libpq connected with
    assert (dsn["keepalives"], dsn["keepalives_idle"], dsn["connect_timeout"],
            dsn["tcp_user_timeout"]) == ("1", "10", "5", "30000"), dsn
    assert connection.settings_dict["ENGINE"] == "common.postgresql"
    assert connection.settings_dict["OPTIONS"]["connect_timeout"] == 5


def test_the_heartbeat_goes_on_while_the_relay_backs_off(tmp_path):
    """Broker unreachable, long back-off: the loop is alive, only waiting, and says so every
    second (docs/operations.md, "Health")."""
    heartbeat = tmp_path / "hb"
    proc = processes.Proc("relay-backoff", [sys.executable, "admin_project/manage.py", "relay"],
                          processes.base_env(
                              CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:"
                                                f"{processes.free_port()}//",
                              ADMIN_DATABASE_URL="postgres://{USER}@{HOST}:{PORT}/{NAME}".format(
                                  **{k: connection.settings_dict[k] or "" for k in
                                     ("USER", "HOST", "PORT", "NAME")}),
                              ADMIN_RELAY_MAX_BACKOFF_SECONDS="30",
                              ADMIN_RELAY_HEARTBEAT_FILE=str(heartbeat)))
    try:
        services.product_create(title="waits", price=Decimal("1.00"))
        wait_until(lambda: proc.log().count("publish failed") >= 3 or not proc.alive(),
                   timeout=60, message=lambda: proc.tail())
        ages = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # sampled through a long back-off
            ages.append(time.time() - float(heartbeat.read_text()))
            time.sleep(0.25)  # sampling interval, not a wait for a condition
        # beats every second of the back-off; only a connect attempt itself (about 2 s against
        # a closed port) goes without one. Before, it aged through the whole back-off (17 s+).
        assert max(ages) < 5, ages
        assert "retrying in" in proc.log()
    finally:
        proc.stop()
