"""Publish/subscribe: the catalog and the audit log each bind their own queue to the `products`
exchange. Both get every event; each goes at its own pace; a stopped one holds back nobody and
catches up from its queue when it comes back."""

from __future__ import annotations

import contextlib

import psycopg2
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
