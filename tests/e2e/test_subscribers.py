"""Publish/subscribe: the catalog and the audit log each bind their own queue to the `products`
exchange. Both get every event; each goes at its own pace; a stopped one holds back nobody and
catches up from its queue when it comes back."""

from __future__ import annotations

import contextlib

import psycopg2
import pytest
import requests

from harness import amqp
from harness.stack import running_stack, wait_converged
from harness.waiting import wait_until


def audit_rows(env, pid=None):
    """The audit log's rows (catalog database): a count, or one product's (type, version)."""
    query, params = "SELECT count(*) FROM audit_productchange", None
    if pid is not None:
        query, params = ("SELECT type, version FROM audit_productchange WHERE product_id = %s"
                         " ORDER BY version", [pid])
    with contextlib.closing(psycopg2.connect(env["CATALOG_DATABASE_URL"],
                                             connect_timeout=5)) as conn, conn, \
            conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    return rows[0][0] if pid is None else rows


def test_both_subscribers_get_every_event(stack):
    s = stack.admin_session()
    pid = s.post(f"{stack.admin}/api/products/", json={"title": "Pub", "price": "1.00"},
                 timeout=10).json()["id"]
    assert s.patch(f"{stack.admin}/api/products/{pid}/", json={"price": "2.00"},
                   timeout=10).status_code == 200
    assert s.delete(f"{stack.admin}/api/products/{pid}/", timeout=10).status_code == 204

    expected = [("product.created", 1), ("product.updated", 2), ("product.deleted", 3)]
    wait_until(lambda: audit_rows(stack.env, pid) == expected, timeout=20,
               message=lambda: f"audit rows {audit_rows(stack.env, pid)}")
    wait_until(lambda: requests.get(f"{stack.catalog}/api/products/{pid}/",
                                    timeout=5).status_code == 404,
               timeout=20, message="the delete in the catalog")
    changes = requests.get(f"{stack.catalog}/api/product-changes/?product_id={pid}",
                           timeout=5).json()["results"]
    assert [(c["type"], c["version"]) for c in changes] == expected


def test_a_stopped_subscriber_holds_back_nobody_and_catches_up():
    with running_stack("pubsub", start=("admin", "catalog", "relay", "worker", "audit")) as st:
        audit = st.proc("audit")
        wait_until(lambda: " ready." in audit.log(), timeout=60,
                   message=lambda: audit.tail())
        audit.stop()  # its queue stays: events for it wait there

        gen = st.generate(300, updates=100)
        assert gen.wait(180) == 0, gen.stdout.read()
        total, _ = st.outbox()
        assert total == 400
        # the catalog converges while the audit log is down
        wait_converged(st, timeout=60)
        assert audit_rows(st.env) == 0
        with amqp.broker_connection_to(st.env["CELERY_BROKER_URL"]) as conn:
            _, waiting, _ = conn.default_channel.queue_declare("audit.products", passive=True)
        assert waiting > 0  # batched: fewer messages than events

        st.start("audit")  # back: it catches up from its own queue
        wait_until(lambda: audit_rows(st.env) == total, timeout=60,
                   message=lambda: f"audit rows {audit_rows(st.env)} of {total}\n"
                                   f"{st.proc('audit').tail(20)}")


def test_resync_twice_records_each_change_once_in_the_audit_log():
    """An event id names a change: resync and `reconcile --repair` send each change under the id
    it first had, so the audit log (one row per event id) records it once; the catalog is
    unchanged."""
    with running_stack("resyncids", start=("admin", "catalog", "relay", "worker", "audit")) as st:
        gen = st.generate(40, updates=20, deletes=5)
        assert gen.wait(180) == 0, gen.stdout.read()
        total, _ = st.outbox()
        wait_converged(st, timeout=60)
        wait_until(lambda: audit_rows(st.env) == total, timeout=60,
                   message=lambda: f"audit rows {audit_rows(st.env)} of {total}")

        def catalog_rows():
            return st.sql("catalog", "SELECT id, version, deleted, title, price, updated_at "
                                     "FROM catalog_product ORDER BY id")

        def audit_log():
            return st.sql("catalog", "SELECT event_id::text, type, product_id, version "
                                     "FROM audit_productchange ORDER BY product_id, version")

        catalog_before, audit_before = catalog_rows(), audit_log()
        for _ in range(2):  # every id, straight to the broker (confirmed), not the outbox
            out = st.manage("admin_project", "resync", "--restart", "--batch-size", "7")
            assert out.returncode == 0, out.stdout + out.stderr
            assert f"resync queued {len(catalog_before)} events" in out.stdout, out.stdout
            assert "into the outbox" not in out.stdout, out.stdout
        # and a repair: the catalog loses a row, `reconcile --repair` sends that change again
        st.sql("catalog", "DELETE FROM catalog_product WHERE id = "
                          "(SELECT min(id) FROM catalog_product WHERE NOT deleted)")
        repair = st.manage("admin_project", "reconcile", "--repair", "--catalog-url", st.catalog)
        assert "repair: queued 1 events" in repair.stdout, repair.stdout + repair.stderr
        resent, _ = st.outbox()
        assert resent == total + 1  # the repair, through the outbox
        # a sentinel change after them: once the audit log has it, it has seen the resyncs
        # (one audit process, its queue in order)
        s = st.admin_session()
        pid = s.post(f"{st.admin}/api/products/", json={"title": "sentinel", "price": "1.00"},
                     timeout=10).json()["id"]
        wait_until(lambda: audit_rows(st.env, pid) == [("product.created", 1)], timeout=90,
                   message=lambda: f"the sentinel in the audit log\n{st.proc('audit').tail(20)}")
        wait_converged(st, timeout=60)
        assert [r for r in audit_log() if r[2] != pid] == audit_before  # each change once
        assert len({row[0] for row in audit_before}) == total
        assert [r for r in catalog_rows() if r[0] != pid] == catalog_before


@pytest.mark.parametrize("celery_broker_url", ["", None])
def test_the_documented_audit_dlq_command_reads_the_audit_dlq_as_the_audit_user(
        stack, celery_broker_url):
    """docs/operations.md: `python catalog_project/manage.py dlq --subscriber audit list`, also
    when CELERY_BROKER_URL is empty (it once connected to kombu's default broker then)."""
    import subprocess
    import sys
    import uuid

    from harness import amqp, processes

    marker = f"parked-{uuid.uuid4().hex[:8]}"
    with amqp.broker_connection_to(stack.env["CELERY_BROKER_URL"]) as conn:
        conn.Producer().publish(b"[]", exchange="", routing_key="audit.products.dlq",
                                headers={"task": marker, "id": marker,
                                         "x-park-reason": "a test's marker"},
                                content_type="application/json", retry=False)
    env = dict(stack.env)
    if celery_broker_url is None:
        env.pop("CELERY_BROKER_URL")
    else:
        env["CELERY_BROKER_URL"] = celery_broker_url
    out = subprocess.run([sys.executable, "catalog_project/manage.py", "dlq", "--subscriber",
                          "audit", "list"], cwd=processes.REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert marker in out.stdout and "a test's marker" in out.stdout, out.stdout
    amqp.drain("audit.products.dlq", url=stack.env["CELERY_BROKER_URL"])
