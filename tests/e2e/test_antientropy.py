"""Anti-entropy (admin_project/products/antientropy.py): drift of every kind in the catalog's
database is found by range digests and repaired through outbox -> relay -> worker by the relay's
periodic check, with no command run; `manage.py antientropy` reports with distinct exit codes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from re import search as re_search

import psycopg2
import pytest
import requests

from harness import processes
from harness.stack import http_up, procfile, running_stack
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


# --- outside findings 6-10: bounded, throttled, in flight, one at a time, visible ---------------

def relay_metrics(url: str) -> dict[str, float]:
    out = {}
    for line in requests.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_the_relay_exports_that_checks_are_off(stack):
    """Found by an outsider: with ADMIN_RECONCILE_EVERY_SECONDS=0 (this stack) the relay had no
    antientropy_* series, so AntiEntropyNotRunning could never fire; and the rule needs the
    relay's start time (ops/prometheus/alerts.yml)."""
    metrics = wait_until(lambda: relay_metrics(stack.relay_metrics), timeout=30)
    assert metrics["antientropy_enabled"] == 0 and metrics["antientropy_interval_seconds"] == 0
    assert metrics["antientropy_last_success_timestamp_seconds"] == 0
    assert metrics["process_start_time_seconds"] > 0


@pytest.fixture(scope="module")
def limited_catalog(stack):
    """A second catalog web app on the same database, with the catalog's default digest rate
    (120/minute, its own throttle counts) and two web workers, as `make run` has."""
    port = processes.free_port()
    env = dict(stack.env, CATALOG_PORT=str(port), CATALOG_WEB_WORKERS="2",
               CATALOG_THROTTLE_DIGESTS="120/minute", CATALOG_DIGESTS_AT_ONCE="1",
               CATALOG_CACHE_URL="redis://127.0.0.1:6379/11", RESPAWN_CRASHED="false")
    proc = processes.Proc("antientropy-limited-catalog", ["sh", "-c", procfile()["catalog"]],
                          env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_up(f"{url}/api/products/") or not proc.alive(), timeout=60,
                   message=lambda: proc.tail(30))
        assert proc.alive(), proc.tail(30)
        yield url, proc
    finally:
        proc.stop()


def test_a_scattered_loss_is_repaired_under_the_default_digest_rate(stack, limited_catalog):
    """Found by an outsider: 130 products 600 ids apart that the catalog lacks (restored from an
    old backup) made every check fail with 'catalog unreadable: 429' under the default digest
    rate (120/minute), repairing nothing. Now one request per window of rows finds them all."""
    limited_catalog, _ = limited_catalog
    admin = stack.admin_session()
    ((top,),) = _admin_sql(stack, "SELECT coalesce(max(id), 0) FROM products_product")
    ids = [top + 1_000_000 + 600 * i for i in range(130)]
    _admin_sql(stack, "INSERT INTO products_product (id, title, image, price, description, "
                      "version, created_at, updated_at) SELECT g, 'scattered ' || g, '', 2.5, "
                      "'', 1, now(), now() FROM unnest(%s::bigint[]) g", [ids])
    out = antientropy(stack, url=limited_catalog)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "130 drifted (missing 130)" in out.stdout and "130 repaired" in out.stdout, out.stdout
    wait_until(lambda: all(requests.get(f"{stack.catalog}/api/products/{pid}/", timeout=10)
                           .status_code == 200 for pid in ids[::13]), timeout=60, interval=0.5)
    wait_until(converged(stack, admin), timeout=60, interval=0.5)
    assert antientropy(stack, "--no-repair", url=limited_catalog).returncode == 0


def test_checks_run_one_at_a_time_and_the_catalog_computes_one_digest_at_a_time(
        stack, limited_catalog):
    """Found by an outsider: manual checks did not take the relays' lock, and two concurrent
    digests held both sync web workers of the catalog (a product read took 23 s)."""
    limited_catalog, web = limited_catalog

    def busy_answers() -> int:
        return sum(1 for line in web.log().splitlines()
                   if "/api/product-digests/" in line and '" 429 ' in line)

    # the admin side: a check by hand waits --wait seconds for the lock, then exits 3
    with contextlib.closing(psycopg2.connect(stack.env["ADMIN_DATABASE_URL"])) as other:
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", [0x70726F64])
        for command in ("antientropy", "reconcile"):
            busy = subprocess.run(
                [sys.executable, "admin_project/manage.py", command, "--catalog-url",
                 stack.catalog, "--wait", "2"], cwd=processes.REPO, env=stack.env,
                capture_output=True, text=True, timeout=120)
            assert busy.returncode == 3, busy.stdout + busy.stderr
            assert "another anti-entropy check" in busy.stderr
    # the catalog side: while another process computes a digest, digests are 429 at once with
    # Retry-After, and the other web worker serves reads
    with contextlib.closing(psycopg2.connect(stack.env["CATALOG_DATABASE_URL"])) as other:
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, 0)", [0x64696765])
        answer = requests.get(f"{limited_catalog}/api/product-digests/?start=1&end=100",
                              timeout=30)
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
        assert requests.get(f"{limited_catalog}/api/products/", timeout=30).status_code == 200
        # a check meeting that waits (Retry-After) and finishes once the digest is done
        before = wait_until(busy_answers, timeout=10, message=lambda: web.tail(10))
        check = subprocess.Popen(
            [sys.executable, "admin_project/manage.py", "antientropy", "--no-repair",
             "--catalog-url", limited_catalog], cwd=processes.REPO, env=stack.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: busy_answers() > before, timeout=60,
                       message=lambda: f"the check answered busy:\n{web.tail(10)}")
        finally:
            other.close()  # the other digest is done
        out, err = check.communicate(timeout=120)
    assert check.returncode in (0, 1), out + err  # it finished: a verdict
    assert "waited" in out, out


def _admin_sql(stack, sql, params=None):
    with contextlib.closing(psycopg2.connect(stack.env["ADMIN_DATABASE_URL"])) as conn, \
            conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def test_events_in_flight_while_the_worker_is_stopped_are_not_republished():
    """Found by an outsider: with the worker stopped (a deploy), 3000 new products safe in the
    queue were reported 'missing 3000' and republished (the outbox doubled, the worker later
    applied 2600 stale copies). Events sent within ADMIN_ANTIENTROPY_GRACE_SECONDS are in
    flight: reported on their own, not repaired."""
    n = 300
    with running_stack("ae-inflight",
                       overrides={"ADMIN_ANTIENTROPY_GRACE_SECONDS": "600"}) as st:
        st.proc("worker").stop()  # a deploy: the queue keeps what the relay sends
        session = st.admin_session()
        for i in range(n):
            session.post(f"{st.admin}/api/products/", json={"title": f"f{i}", "price": "1.00"},
                         timeout=10).raise_for_status()
        wait_until(lambda: st.outbox() == (n, 0), timeout=60, interval=0.5,
                   message=lambda: f"the events sent: {st.outbox()}")
        check = st.manage("admin_project", "antientropy", "--catalog-url", st.catalog)
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"0 drifted, {n} in flight (not repaired), 0 repaired" in check.stdout, \
            check.stdout
        rec = st.manage("admin_project", "reconcile", "--repair", "--catalog-url", st.catalog)
        assert rec.returncode == 0 and "in flight" in rec.stdout, rec.stdout + rec.stderr
        assert st.outbox() == (n, 0)  # nothing republished
        # with no grace (events known lost) the same ids are drift
        lost = st.manage("admin_project", "antientropy", "--no-repair", "--grace", "0",
                         "--catalog-url", st.catalog)
        assert lost.returncode == 1 and f"missing {n}" in lost.stdout, lost.stdout
        st.start("worker")
        st.wait_worker_ready()
        wait_until(st.converged, timeout=120, interval=1, message="the queue applied")
        # each event applied once: no stale copies (the worker logs each task's result)
        wait_until(lambda: st.worker_totals()["applied"] == n, timeout=30, interval=0.5,
                   message=lambda: f"the worker's results: {st.worker_totals()}")
        assert st.worker_totals()["stale"] == 0 and st.outbox() == (n, 0)
