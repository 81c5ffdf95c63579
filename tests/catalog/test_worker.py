"""The catalog worker as a real process against the real RabbitMQ (session vhost)."""

import json
import pickle
import uuid

import pytest
from django.db import connection
from kombu import Exchange

from catalog_project.catalog.models import Product
from harness import amqp, pg
from harness.waiting import wait_until
from product_events import contract

from .events import event

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

PRODUCTS = Exchange(contract.EXCHANGE, "topic", durable=True)


def publish_raw(body: bytes, *, routing_key="product.created", exchange=PRODUCTS,
                task=contract.TASK_APPLY_PRODUCT_EVENTS, content_type="application/json",
                headers=None):
    """Publish exactly what docs/events.md tells a non-Python producer to send."""
    task_id = str(uuid.uuid4())
    hdrs = {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
            "group": None, "retries": 0, "eta": None, "expires": None}
    hdrs.update(headers or {})
    with amqp.broker_connection() as conn:
        producer = conn.Producer()
        producer.publish(body, exchange=exchange, routing_key=routing_key, headers=hdrs,
                         content_type=content_type, content_encoding="utf-8",
                         delivery_mode=2, mandatory=True, retry=False)
    return task_id


def task_body(events) -> bytes:
    return json.dumps([[], {"events": events},
                       {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
                      ).encode()


def row(pid):
    return Product.objects.filter(pk=pid).first()


def dlq_messages(expected: int):
    got = []
    wait_until(lambda: got.extend(amqp.drain("catalog.products.dlq")) or len(got) >= expected,
               timeout=20, message=lambda: f"{expected} parked messages (have {len(got)})")
    return got


def test_a_raw_documented_message_is_applied(worker, dlq_empty):
    publish_raw(task_body([event(1, 1), event(2, 1)]))
    wait_until(lambda: row(1) and row(2), timeout=20,
               message=lambda: f"rows; worker log:\n{worker.tail()}")
    assert row(1).version == 1


def test_bad_events_are_parked_and_the_good_ones_of_the_batch_applied(worker, dlq_empty):
    bad_missing = event(11, 1)
    del bad_missing["data"]["title"]
    bad_type = event(12, 1)
    bad_type["type"] = "product.exploded"
    publish_raw(task_body([event(10, 1), bad_missing, bad_type, "not an object", event(13, 1)]))
    wait_until(lambda: row(10) and row(13), timeout=20, message="good events applied")
    parked = dlq_messages(3)
    reasons = sorted(m.headers["x-park-reason"] for m in parked)
    assert any("title" in r for r in reasons), reasons
    assert any("product.exploded" in r for r in reasons), reasons
    assert any("not an object" in r or "is not of type 'object'" in r for r in reasons), reasons
    for m in parked:  # a parked message is a replayable task message with one event
        assert m.headers["task"] == contract.TASK_APPLY_PRODUCT_EVENTS
        assert len(json.loads(m.body)[1]["events"]) == 1
    assert row(11) is None and row(12) is None


def test_a_value_that_cannot_be_stored_is_parked_alone(worker, dlq_empty):
    """Valid by the schema, refused when written (a lone UTF-16 surrogate cannot be encoded)."""
    publish_raw(task_body([event(20, 1), event(21, 1, title="lone \ud800"), event(22, 1)]))
    wait_until(lambda: row(20) and row(22), timeout=20, message="good events applied")
    (parked,) = dlq_messages(1)
    assert "cannot be stored" in parked.headers["x-park-reason"]
    assert row(21) is None


@pytest.mark.parametrize("case,reason", [
    ("unknown task", "unknown task 'catalog.no_such_task'"),
    ("pickle body", "pickle"),
    ("invalid json", "undecodable body"),
    ("wrong content type", "untrusted content of type text/plain"),
    ("no task header", "not a Celery task message"),
    ("bad kwargs", "kwargs 'events' must be a non-empty list"),
])
def test_undeliverable_messages_are_parked_with_a_reason(worker, dlq_empty, case, reason):
    body = task_body([event(30, 1)])
    if case == "unknown task":
        publish_raw(body, task="catalog.no_such_task")
    elif case == "pickle body":
        body = pickle.dumps([[], {"events": []}, {}])
        publish_raw(body, content_type="application/x-python-serialize")
    elif case == "invalid json":
        body = b'[[], {"events": [oops'
        publish_raw(body)
    elif case == "wrong content type":
        publish_raw(body, content_type="text/plain")
    elif case == "no task header":
        with amqp.broker_connection() as conn:
            conn.Producer().publish(body, exchange=PRODUCTS, routing_key="product.created",
                                    content_type="application/json", content_encoding="utf-8",
                                    retry=False)
    else:
        body = json.dumps([[], {"events": "nope"}, {}]).encode()
        publish_raw(body)
    (parked,) = dlq_messages(1)
    assert reason in parked.headers["x-park-reason"], parked.headers
    raw = parked.body if isinstance(parked.body, bytes) else parked.body.encode("utf-8")
    assert raw == body  # parked untouched: replayable after a fix
    assert row(30) is None


def test_worker_keeps_consuming_behind_poison(worker, dlq_empty):
    publish_raw(b"\xff\xfe not json")
    publish_raw(task_body([event(31, 1)]))
    wait_until(lambda: row(31), timeout=20, message="the good message behind the poison")
    dlq_messages(1)


def test_transient_database_outage_is_retried_until_applied(worker, dlq_empty):
    spy = f"spy-{uuid.uuid4().hex[:8]}"
    amqp.spy_queue(spy, contract.EXCHANGE, "#")
    db = connection.settings_dict["NAME"]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (my_pid,) = cur.fetchone()
    pg.connections_block(db)
    try:
        pg.connections_terminate(db, keep_pid=my_pid)
        publish_raw(task_body([event(40, 1)]))
        # unreachable, not failing: the worker pauses and holds the message (nothing parked)
        wait_until(lambda: "paused: the catalog database is unreachable" in worker.log(),
                   timeout=30, message=lambda: f"a pause; worker log:\n{worker.tail()}")
        assert row(40) is None
    finally:
        pg.connections_allow(db)
    wait_until(lambda: row(40), timeout=30, message=lambda: f"row 40:\n{worker.tail()}")
    # retries travel through the catalog's private exchange: other subscribers of the
    # products exchange saw the event exactly once
    assert len(amqp.drain(spy)) == 1
    amqp.queue_delete(spy)
    assert amqp.queue_depth("catalog.products.dlq") == 0


def test_a_message_that_keeps_killing_its_pool_process_is_parked_by_the_worker(
        django_db_setup):
    """The worker's own poison handling with the prefork pool (CATALOG_WORKER_POOL=prefork): a
    message whose run was lost WORKER_LOST_LIMIT times (its pool process killed: an OOM kill, a
    segfault) is parked with the reason, long before the queue's delivery limit (100, the
    backstop) would dead-letter it. (With the thread pool there is no pool process to lose:
    a whole worker killed gives its messages back to the broker, tests/faults.) On its own
    vhost, with a worker of its own."""
    import os
    import signal

    import psycopg2

    from harness import processes
    from harness.vhosts import vhost_create, vhost_delete
    from workers.handling import WORKER_LOST_LIMIT

    vhost = f"lost-{uuid.uuid4().hex[:8]}"
    url = vhost_create(vhost)
    db = connection.settings_dict["NAME"]
    db_url = pg.database_url(db)
    proc = processes.Proc("catalog-worker-lost", processes.worker_argv(name="lost"),
                          processes.base_env(CELERY_BROKER_URL=url, CATALOG_DATABASE_URL=db_url,
                                             CATALOG_WORKER_POOL="prefork"))
    lock = psycopg2.connect(db_url, connect_timeout=5)
    seen: set[int] = set()

    def new_waiter():  # the task's statement, waiting for the lock: the task is running
        with psycopg2.connect(db_url, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                        "wait_event_type = 'Lock'", [db])
            return ({pid for (pid,) in cur.fetchall()} - seen) or None

    def publish(body: bytes) -> str:
        task_id = str(uuid.uuid4())
        with amqp.broker_connection_to(url) as conn:
            conn.Producer().publish(body, exchange=PRODUCTS, routing_key="product.created",
                                    content_type="application/json", content_encoding="utf-8",
                                    headers={"lang": "py", "task":
                                             contract.TASK_APPLY_PRODUCT_EVENTS, "id": task_id},
                                    delivery_mode=2, retry=False)
        return task_id

    try:
        wait_until(lambda: " ready." in proc.log() or not proc.alive(), timeout=60,
                   message=proc.tail)
        assert "(prefork)" in proc.log(), proc.tail()
        with lock.cursor() as cur:
            cur.execute("LOCK TABLE catalog_product IN EXCLUSIVE MODE")
        task_id = publish(task_body([event(4242, 1)]))
        for _ in range(WORKER_LOST_LIMIT):
            waiting = wait_until(new_waiter, timeout=30,
                                 message=lambda: f"the task running\n{proc.tail()}")
            seen |= waiting
            for pid, ppid, _args in processes.descendants(proc.pid):
                if ppid == proc.pid:  # every pool process; the main starts new ones
                    os.kill(pid, signal.SIGKILL)
            pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE pid = ANY(%s)", [list(waiting)])
        (parked,) = wait_until(lambda: amqp.drain("catalog.products.dlq", url=url),
                               timeout=30, interval=0.2,
                               message=lambda: f"the parked message\n{proc.tail()}")
        lock.close()
        assert parked.headers["id"] == task_id
        assert f"killed its worker process {WORKER_LOST_LIMIT} times" in \
            parked.headers["x-park-reason"]
        assert "x-death" not in parked.headers  # parked by the worker, not by the limit
        assert json.loads(parked.body)[1]["events"][0]["product_id"] == 4242
        assert row(4242) is None
        assert proc.alive()
        # the worker goes on: a valid event after it is applied
        publish(task_body([event(4243, 1)]))
        wait_until(lambda: row(4243), timeout=30, message=proc.tail)
    finally:
        lock.close()
        proc.stop()
        vhost_delete(vhost)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_broker_connection_lost_while_tasks_run_parks_nothing_and_logs_no_traceback(
        django_db_setup, pool):
    """The worker's broker connection is closed (a broker restart, a network cut) while its
    tasks are running, WORKER_LOST_LIMIT times in a row, each time with the same message's
    task running. With prefork Celery stops the pool processes running them (their acks could
    not reach the broker): that is no sign of poison, and the worker's own count of lost runs
    (WORKER_LOST_LIMIT) does not park the message for it.
    With threads a task cannot be stopped: it stops at its next retry (DeliveryLost) or
    finishes its write, and an ack with no connection to go on is one warning line, not a
    CRITICAL traceback (nor Celery's "does not implement kill_job" one). Either way every
    event is applied and nothing is dead-lettered."""
    import psycopg2

    from harness import processes, rabbit
    from harness.vhosts import vhost_create, vhost_delete
    from workers.handling import WORKER_LOST_LIMIT

    vhost = f"connloss-{uuid.uuid4().hex[:8]}"
    url = vhost_create(vhost)
    db = connection.settings_dict["NAME"]
    db_url = pg.database_url(db)
    proc = processes.Proc(f"catalog-worker-connloss-{pool}",
                          processes.worker_argv(name=f"connloss-{pool}"),
                          processes.base_env(CELERY_BROKER_URL=url, CATALOG_DATABASE_URL=db_url,
                                             CATALOG_WORKER_POOL=pool))
    lock = psycopg2.connect(db_url, connect_timeout=5)
    seen: set[int] = set()

    def new_waiters():  # tasks' statements waiting for the lock: tasks running
        with psycopg2.connect(db_url, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                        "wait_event_type = 'Lock'", [db])
            waiting = {pid for (pid,) in cur.fetchall()}
            # a stopped pool process gives way to a new one (a new session); a thread goes on
            return ((waiting - seen) if pool == "prefork" else waiting) or None

    def connected() -> bool:
        return bool(rabbit.connection_users(vhost))

    try:
        wait_until(lambda: " ready." in proc.log() or not proc.alive(), timeout=60,
                   message=proc.tail)
        assert f"({pool})" in proc.log() or pool == "threads", proc.tail()
        with lock.cursor() as cur:
            cur.execute("LOCK TABLE catalog_product IN EXCLUSIVE MODE")
        for product_id in (5151, 5152):
            with amqp.broker_connection_to(url) as conn:
                conn.Producer().publish(task_body([event(product_id, 1)]), exchange=PRODUCTS,
                                        routing_key="product.created",
                                        content_type="application/json",
                                        content_encoding="utf-8", delivery_mode=2, retry=False,
                                        headers={"lang": "py", "id": str(uuid.uuid4()),
                                                 "task": contract.TASK_APPLY_PRODUCT_EVENTS})
        for round_ in range(WORKER_LOST_LIMIT):
            waiting = wait_until(new_waiters, timeout=30, message=lambda r=round_:
                                 f"a task running, round {r}\n{proc.tail()}")
            seen |= waiting
            wait_until(connected, timeout=30, message=proc.tail)
            assert rabbit.close_connections(vhost, "test: connection lost") >= 1
            # the statements of stopped pool processes wait on (their server does not notice)
            if pool == "prefork":
                pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE pid = ANY(%s)", [list(waiting)])
            wait_until(connected, timeout=30, message=lambda: f"reconnected\n{proc.tail()}")
        lock.close()  # the table unlocked: every task can write
        wait_until(lambda: row(5151) and row(5152), timeout=60,
                   message=lambda: f"both rows\n{proc.tail()}")
        assert row(5151).version == row(5152).version == 1
        # every message settled (acked after its write), none parked
        wait_until(lambda: amqp.queue_depth("catalog.products", url=url) == 0
                   and not _unacked(vhost), timeout=60, message=proc.tail)
        assert amqp.queue_depth("catalog.products.dlq", url=url) == 0, proc.tail()
        assert proc.alive(), proc.tail()
        log = proc.log()
        assert "Connection to broker lost" in log
        for noise in ("Traceback", "CRITICAL", "kill_job"):
            assert noise not in log, f"{noise!r} in the worker's log:\n{proc.tail()}"
        if pool == "threads":  # nothing was terminated
            assert "Terminating it instead" not in log, proc.tail()
            assert "broker connection lost with" in log, proc.tail()
        else:  # Celery stopped the pool processes running them (and says so)
            assert "Terminating it instead" in log, proc.tail()
    finally:
        lock.close()
        proc.stop()
        vhost_delete(vhost)


def _unacked(vhost: str) -> int:
    import subprocess

    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name",
                          "messages_unacknowledged"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return sum(int(parts[1]) for parts in (line.split("\t") for line in out.splitlines())
               if len(parts) == 2 and parts[0] == "catalog.products" and parts[1].isdigit())
