"""The subscribers' queues on the real broker: the documented queue upgrade (`manage.py topology
upgrade`) loses no event while the relay publishes and writes go on, and a missing subscriber
queue is seen (`topology check` exits 1 naming it, the catalog's gauge says 0)."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import uuid

import pytest
import requests
from kombu import Connection

from catalog_project.topology import DELIVERY_LIMIT
from harness import processes
from harness.stack import running_stack, wait_converged
from harness.waiting import wait_until
from tests.e2e.test_ops import metric

pytestmark = pytest.mark.broker

SUBSCRIBERS = {"catalog": "product.#", "audit": "product.*"}


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


class Writer(threading.Thread):
    """Creates, updates and deletes products through the admin API until stopped."""

    def __init__(self, stack) -> None:
        super().__init__(daemon=True)
        self.stack, self.stop, self.writes, self.error = stack, threading.Event(), 0, None

    def run(self) -> None:
        session, live, rnd = self.stack.admin_session(), [], random.Random(11)
        try:
            while not self.stop.is_set():
                r = session.post(f"{self.stack.admin}/api/products/", timeout=10,
                                 json={"title": f"w{self.writes}", "price": "1.00"})
                r.raise_for_status()
                live.append(r.json()["id"])
                if self.writes % 3 == 0:
                    session.patch(f"{self.stack.admin}/api/products/{rnd.choice(live)}/",
                                  json={"price": "2.00"}, timeout=10).raise_for_status()
                if self.writes % 10 == 9:
                    pid = live.pop(rnd.randrange(len(live)))
                    session.delete(f"{self.stack.admin}/api/products/{pid}/",
                                   timeout=10).raise_for_status()
                self.writes += 1
                self.stop.wait(0.005)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


@contextlib.contextmanager
def least_privilege_users(stack, vhost: str):
    """{role: broker URL}: the users compose gives each process (scripts/broker_users.py)."""
    values, urls = {}, {}
    for role in ("ADMIN", "CATALOG", "AUDIT", "FLOWER"):
        user, secret = f"qup-{role.lower()}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        values[f"{role}_BROKER_USER"], values[f"{role}_BROKER_PASSWORD"] = user, secret
        urls[role] = f"amqp://{user}:{secret}@127.0.0.1:5672/{vhost}"
    try:
        made = subprocess.run([sys.executable, "scripts/broker_users.py", "--rabbitmqctl",
                               "--vhost", vhost], cwd=processes.REPO,
                              env=processes.base_env(**values), capture_output=True, text=True,
                              timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        yield urls
    finally:
        for role in ("ADMIN", "CATALOG", "AUDIT", "FLOWER"):
            subprocess.run(["rabbitmqctl", "-q", "delete_user", values[f"{role}_BROKER_USER"]],
                           capture_output=True, timeout=60)


def db_now(stack):
    return stack.sql("admin", "SELECT now()")[0][0]


def audit_event_ids(stack) -> set[str]:
    return {r[0] for r in stack.sql("catalog", "SELECT event_id::text FROM audit_productchange")}


def outbox_event_ids(stack) -> set[str]:
    return {r[0] for r in stack.sql("admin", "SELECT event_id::text FROM products_outboxevent")}


def queue_arguments(vhost: str) -> dict[str, tuple[str, str]]:
    return {line.split("\t")[0]: tuple(line.split("\t")[1:3])
            for line in rabbitmqctl("list_queues", "-p", vhost, "name", "type",
                                    "arguments").splitlines()}


def test_queue_upgrade_while_the_relay_publishes_loses_nothing():
    with running_stack("qupgrade", start=("admin", "catalog")) as st, \
            least_privilege_users(st, st.env["CELERY_BROKER_URL"].rsplit("/", 1)[1]) as users:
        vhost = st.env["CELERY_BROKER_URL"].rsplit("/", 1)[1]
        # The queues as an older release declared them: quorum, another delivery limit, no
        # dead-lettering. A worker of this release refuses them (test_topology.py in
        # tests/catalog); its workers are stopped, the relay runs and fills them.
        with Connection(st.env["CELERY_BROKER_URL"]) as conn:
            ch = conn.channel()
            ch.exchange_declare("products", "topic", durable=True, auto_delete=False)
            for name, pattern in SUBSCRIBERS.items():
                ch.exchange_declare(name, "topic", durable=True, auto_delete=False)
                ch.queue_declare(f"{name}.products", durable=True, auto_delete=False,
                                 arguments={"x-queue-type": "quorum", "x-delivery-limit": 20})
                ch.queue_bind(f"{name}.products", "products", pattern)
                ch.queue_bind(f"{name}.products", name, f"{name}.products")
        st.start("relay")
        writer = Writer(st)
        writer.start()
        try:
            wait_until(lambda: st.sql("admin", "SELECT count(*) FROM products_outboxevent "
                                               "WHERE sent_at IS NOT NULL")[0][0] >= 100,
                       timeout=60, message="the relay publishing")
            started = db_now(st)
            for name in SUBSCRIBERS:  # the documented procedure: docs/operations.md
                # with the subscriber's own least-privilege broker user, as an operator would
                up = subprocess.run(
                    [sys.executable, "catalog_project/manage.py", "topology", "upgrade",
                     "--subscriber", name], cwd=processes.REPO, capture_output=True, text=True,
                    timeout=300, env=st.env | {"CELERY_BROKER_URL": users[name.upper()]})
                assert up.returncode == 0, up.stdout + up.stderr
                assert f"{name}.products upgraded" in up.stdout, up.stdout
            ended = db_now(st)
            writes_during = writer.writes
            wait_until(lambda: writer.writes > writes_during + 20, timeout=30,
                       message="writes after the upgrade")
        finally:
            writer.stop.set()
            writer.join(30)
        assert writer.error is None, writer.error
        # the relay published (confirmed, marked sent) all along
        (during,) = st.sql("admin", "SELECT count(*) FROM products_outboxevent "
                                    "WHERE sent_at BETWEEN %s AND %s", [started, ended])[0]
        assert during > 0

        queues = queue_arguments(vhost)
        for name in SUBSCRIBERS:
            assert f"{name}.products.upgrade" not in queues  # the holding queues are gone
            kind, arguments = queues[f"{name}.products"]
            assert kind == "quorum", arguments
            assert f'"x-delivery-limit",{DELIVERY_LIMIT}' in arguments, arguments
            assert f'"x-dead-letter-exchange","{name}.dlx"' in arguments, arguments
        check = st.manage("catalog_project", "topology", "check")
        assert check.returncode == 0, check.stdout + check.stderr

        # the workers of this release start on the upgraded queues and nothing is missing
        st.start("worker")
        st.wait_worker_ready()
        st.start("audit")
        wait_converged(st, timeout=120)  # catalog == admin, outbox drained
        sent = outbox_event_ids(st)
        wait_until(lambda: audit_event_ids(st) == sent, timeout=60,
                   message=lambda: f"audit log: {len(sent - audit_event_ids(st))} of "
                                   f"{len(sent)} events missing")


def test_a_missing_subscriber_queue_is_detected_and_repaired():
    with running_stack("qmissing", start=("admin", "catalog", "relay", "worker", "audit")) as st:
        wait_until(lambda: " ready." in st.proc("audit").log(), timeout=60,
                   message=lambda: st.proc("audit").tail())
        ok = st.manage("catalog_project", "topology", "check", "--min-consumers", "1")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        for queue in ("catalog.products", "catalog.products.dlq", "audit.products",
                      "audit.products.dlq"):
            assert f"{queue} " in ok.stdout
        text = requests.get(f"{st.catalog}/metrics", timeout=10).text
        assert metric(text, "catalog_subscriber_queue_present",
                      'queue="catalog.products",role="queue"') == 1
        assert metric(text, "catalog_subscriber_queue_consumers",
                      'queue="catalog.products",role="queue"') >= 1

        # the catalog's queue disappears (its worker stopped, so it does not redeclare it)
        st.proc("worker").stop()
        with Connection(st.env["CELERY_BROKER_URL"]) as conn:
            conn.default_channel.queue_delete("catalog.products")
        missing = st.manage("catalog_project", "topology", "check")
        assert missing.returncode == 1
        assert "catalog.products is missing" in missing.stderr, missing.stderr
        assert "audit.products is missing" not in missing.stderr
        # /metrics computes the queue gauges at most once per PROBE_CACHE_SECONDS per process
        wait_until(lambda: metric(requests.get(f"{st.catalog}/metrics", timeout=10).text,
                                  "catalog_subscriber_queue_present",
                                  'queue="catalog.products",role="queue"') == 0,
                   timeout=30, message="the gauge saying the catalog queue is missing")
        text = requests.get(f"{st.catalog}/metrics", timeout=10).text
        assert metric(text, "catalog_subscriber_queue_present",
                      'queue="audit.products",role="queue"') == 1

        # the failure it detects: the audit queue takes the events, so the relay is confirmed
        # and marks them sent; the catalog never gets them
        session = st.admin_session()
        pid = session.post(f"{st.admin}/api/products/", json={"title": "Lost", "price": "1.00"},
                           timeout=10).json()["id"]
        wait_until(lambda: st.outbox()[1] == 0, timeout=30, message="the event marked sent")
        wait_until(lambda: st.sql("catalog", "SELECT count(*) FROM audit_productchange "
                                             "WHERE product_id = %s", [pid])[0][0] == 1,
                   timeout=30, message="the audit log getting it")

        # the documented repair: declare the queue, start the worker, reconcile --repair
        up = st.manage("catalog_project", "topology", "upgrade")
        assert up.returncode == 0 and "was missing" in up.stdout, up.stdout + up.stderr
        st.start("worker")
        st.wait_worker_ready()
        drift = st.reconcile()
        assert drift.returncode == 1 and "missing" in drift.stdout, drift.stdout
        repair = st.manage("admin_project", "reconcile", "--repair", "--catalog-url", st.catalog)
        assert "repair: queued 1 events" in repair.stdout, repair.stdout
        wait_converged(st, timeout=60)
        assert st.manage("catalog_project", "topology", "check").returncode == 0


def test_make_run_upgrades_an_outdated_queue_before_the_workers_start():
    """A release changed the queue arguments (the delivery limit went 10 -> 100): `make run`'s
    bootstrap replaces the old queue, its messages kept, so the new worker starts."""
    from kombu import Exchange, Queue

    from harness import pg, vhosts

    vhost = f"boot-{uuid.uuid4().hex[:8]}"
    url = vhosts.vhost_create(vhost)
    suffix = uuid.uuid4().hex[:8]
    dbs = {"ADMIN": f"boot_admin_{suffix}", "CATALOG": f"boot_catalog_{suffix}"}
    try:
        with Connection(url, connect_timeout=5,
                        transport_options={"confirm_publish": True}) as conn:
            ch = conn.default_channel
            Exchange("products", "topic", durable=True)(ch).declare()
            old = Queue("catalog.products", Exchange("products", "topic", durable=True),
                        routing_key="product.#", durable=True,
                        queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": 10})(ch)
            old.declare()
            for i in range(5):
                conn.Producer().publish(b"kept %d" % i, exchange="", routing_key=old.name,
                                        retry=False)
        env = processes.base_env(CELERY_BROKER_URL=url, DJANGO_SUPERUSER_USERNAME="boot",
                                 DJANGO_SUPERUSER_PASSWORD="boot-" + uuid.uuid4().hex,
                                 **{f"{k}_DATABASE_URL": pg.database_url(v)
                                    for k, v in dbs.items()})
        boot = subprocess.run([sys.executable, "scripts/bootstrap.py"], cwd=processes.REPO,
                              env=env, capture_output=True, text=True, timeout=300)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        assert "catalog queue: catalog.products upgraded" in boot.stdout, boot.stdout
        assert "audit queue: audit.products does not exist yet" in boot.stdout, boot.stdout
        args = rabbitmqctl("list_queues", "-p", vhost, "name", "arguments", "messages")
        line = next(x for x in args.splitlines() if x.startswith("catalog.products\t"))
        assert f'"x-delivery-limit",{DELIVERY_LIMIT}' in line.replace(" ", ""), line
        with Connection(url, connect_timeout=5) as conn:
            (_, count, _) = conn.default_channel.queue_declare("catalog.products", passive=True)
        assert count == 5
    finally:
        vhosts.vhost_delete(vhost)
        for name in dbs.values():
            pg.database_drop(name)
