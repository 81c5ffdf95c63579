"""Anti-entropy (admin_project/products/antientropy.py): drift of every kind in the catalog's
database is found by range digests and repaired through outbox -> relay -> worker by the relay's
periodic check, with no command run; `manage.py antientropy` reports with distinct exit codes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from re import search as re_search

import psycopg2
import requests

from harness import processes
from harness.waiting import wait_until

from .test_flow import all_pages, converged

UNKNOWN = 999_998


def catalog_sql(stack, *statements):
    with contextlib.closing(psycopg2.connect(stack.env["CATALOG_DATABASE_URL"])) as conn, \
            conn, conn.cursor() as cur:
        for sql, params in statements:
            cur.execute(sql, params)


def antientropy(stack, *extra, url=None):
    return subprocess.run(
        [sys.executable, "admin_project/manage.py", "antientropy", "--catalog-url",
         url or stack.catalog, *extra], cwd=processes.REPO, env=stack.env, capture_output=True,
        text=True, timeout=120)


def test_the_relay_finds_and_repairs_drift_of_every_kind_by_itself(stack, tmp_path):
    admin = stack.admin_session()
    ids = [admin.post(f"{stack.admin}/api/products/", timeout=10,
                      json={"title": f"ae{i}", "price": "3.00"}).json()["id"] for i in range(5)]
    admin.patch(f"{stack.admin}/api/products/{ids[1]}/", json={"title": "ae1 v2"}, timeout=10)
    admin.delete(f"{stack.admin}/api/products/{ids[2]}/", timeout=10)
    wait_until(converged(stack, admin), timeout=30, interval=0.2)
    clean = antientropy(stack, "--no-repair")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 drifted" in clean.stdout, clean.stdout

    # drift of every kind, as an old backup or a hand edit leaves it
    catalog_sql(stack,
                ("DELETE FROM catalog_product WHERE id = %s", [ids[0]]),
                ("UPDATE catalog_product SET version = 1, title = 'ae1' WHERE id = %s", [ids[1]]),
                ("UPDATE catalog_product SET deleted = false, version = 1 WHERE id = %s",
                 [ids[2]]),
                ("UPDATE catalog_product SET title = 'edited by hand' WHERE id = %s", [ids[3]]),
                ("INSERT INTO catalog_product SELECT %s, title, image, price, description, 1, "
                 "updated_at, false, last_event_id, applied_at FROM catalog_product "
                 "WHERE id = %s", [UNKNOWN, ids[4]]))
    report = antientropy(stack, "--no-repair")
    assert report.returncode == 1, report.stdout + report.stderr
    assert "5 drifted (missing 1, behind 1, not_deleted 1, content 1, unknown 1)" in \
        report.stdout, report.stdout

    # a second relay with a short interval (the stack's own checks every 300 s): nobody runs a
    # command, the catalog comes back to the admin's state
    heartbeat = tmp_path / "relay2.heartbeat"
    relay = processes.Proc("relay-antientropy", [sys.executable, "admin_project/manage.py",
                                                 "relay"],
                           dict(stack.env, ADMIN_RECONCILE_EVERY_SECONDS="2",
                                CATALOG_URL=stack.catalog,
                                ADMIN_RELAY_HEARTBEAT_FILE=str(heartbeat),
                                ADMIN_RELAY_METRICS_BIND=f"127.0.0.1:{processes.free_port()}"))
    try:
        def repaired():
            a, c = all_pages(admin, stack.admin), all_pages(requests.Session(), stack.catalog)
            return c.pop(UNKNOWN, None) is not None and a == c
        wait_until(repaired, timeout=60, interval=0.5,
                   message=lambda: f"the repair:\n{relay.tail(30)}")
        wait_until(lambda: "not repaired (the catalog knows more" in relay.log(), timeout=30,
                   message=lambda: relay.tail(30))
    finally:
        relay.stop()
    log = relay.log()
    assert "anti-entropy: compared" in log and "repaired" in log, log[-3000:]
    # the content drift got a new version (a subscriber ignores an event that is not newer)
    assert admin.get(f"{stack.admin}/api/products/{ids[3]}/", timeout=10).json()["version"] == 2
    left = antientropy(stack, "--no-repair")
    assert "1 drifted (unknown 1)" in left.stdout, left.stdout
    catalog_sql(stack, ("DELETE FROM catalog_product WHERE id = %s", [UNKNOWN]))
    assert antientropy(stack).returncode == 0


def test_antientropy_says_in_one_line_when_the_catalog_is_unreadable(stack):
    down = antientropy(stack, url=f"http://127.0.0.1:{processes.free_port()}")
    assert down.returncode == 2, down.stdout + down.stderr
    assert down.stderr.startswith("antientropy: catalog unreadable:"), down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and "Traceback" not in down.stderr


def test_reconcile_sees_content_and_has_distinct_exit_codes(stack):
    def reconcile(*extra, url=None):
        return subprocess.run(
            [sys.executable, "admin_project/manage.py", "reconcile", "--catalog-url",
             url or stack.catalog, *extra], cwd=processes.REPO, env=stack.env,
            capture_output=True, text=True, timeout=120)

    admin = stack.admin_session()
    pid = admin.post(f"{stack.admin}/api/products/", json={"title": "rc", "price": "2.00"},
                     timeout=10).json()["id"]
    wait_until(converged(stack, admin), timeout=30, interval=0.2)
    assert reconcile().returncode == 0
    catalog_sql(stack, ("UPDATE catalog_product SET price = 99 WHERE id = %s", [pid]))
    drift = reconcile()
    assert drift.returncode == 1 and re_search(rf"content\s+1 .*\b{pid}\b", drift.stdout), \
        drift.stdout
    assert "repair: queued 1 events" in reconcile("--repair").stdout
    wait_until(lambda: reconcile().returncode == 0, timeout=30, interval=0.5,
               message="the content repair to land")
    down = reconcile(url=f"http://127.0.0.1:{processes.free_port()}")
    assert down.returncode == 2 and down.stdout == "", down.stdout + down.stderr
    assert down.stderr.startswith("reconcile: catalog unreadable:")
    assert len(down.stderr.strip().splitlines()) == 1


def test_the_largest_id_and_separator_characters_do_not_blind_the_check(stack):
    """Found by an outsider: a catalog row at id 2**63-1 made every check fail as 'catalog
    unreadable', and a title holding the old field separator hid a content change."""
    admin = stack.admin_session()
    pid = admin.post(f"{stack.admin}/api/products/", json={"title": "a\x1fb", "price": "1.00"},
                     timeout=10).json()["id"]
    wait_until(converged(stack, admin), timeout=30, interval=0.2)
    last = 2**63 - 1
    catalog_sql(stack,
                ("UPDATE catalog_product SET title = 'a', image = 'b\x1f' WHERE id = %s", [pid]),
                ("INSERT INTO catalog_product SELECT %s, title, image, price, description, 1, "
                 "updated_at, false, last_event_id, applied_at FROM catalog_product "
                 "WHERE id = %s", [last, pid]))
    try:
        report = antientropy(stack, "--no-repair")
        assert report.returncode == 1, report.stdout + report.stderr
        assert "content 1" in report.stdout and "unknown 1" in report.stdout, report.stdout
        assert str(last) in report.stdout
    finally:
        catalog_sql(stack, ("DELETE FROM catalog_product WHERE id = %s", [last]))
    assert antientropy(stack).returncode == 1  # the content drift found, and repaired
    wait_until(lambda: antientropy(stack, "--no-repair").returncode == 0, timeout=30,
               interval=0.5, message="the content repair")
