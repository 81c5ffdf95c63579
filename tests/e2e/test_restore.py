"""Restoring the admin database from a real `pg_dump`, the way docs/operations.md ("Backups")
says: the restored admin forgets what happened after the backup, the catalog does not, and
`restore_fence` makes the admin dominate before it serves writes again."""

from __future__ import annotations

import subprocess

import pytest
import requests

from harness.stack import http_up, running_stack, wait_converged
from harness.waiting import wait_until

pytestmark = pytest.mark.broker


def test_restoring_the_admin_database_from_a_dump_converges(tmp_path):
    with running_stack("restore") as st:
        admin_db = st.env["ADMIN_DATABASE_URL"]
        s = st.admin_session()

        def create(title):
            r = s.post(f"{st.admin}/api/products/", json={"title": title, "price": "1.00"},
                       timeout=10)
            assert r.status_code == 201, r.text
            return r.json()["id"]

        def patch(pid, title):
            r = s.patch(f"{st.admin}/api/products/{pid}/", json={"title": title}, timeout=10)
            assert r.status_code == 200, r.text

        def delete(pid):
            assert s.delete(f"{st.admin}/api/products/{pid}/", timeout=10).status_code == 204

        def in_catalog(pid):
            r = requests.get(f"{st.catalog}/api/products/{pid}/", timeout=5)
            return r.json() if r.status_code == 200 else r.status_code

        a, b, c = create("A"), create("B"), create("C")
        patch(a, "A v2")
        gone = create("deleted before the backup")
        delete(gone)
        wait_converged(st, timeout=60)
        dump = tmp_path / "admin.dump"
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "-d", admin_db], check=True,
                       capture_output=True, timeout=120)

        # after the backup: all of it is lost with the database, and all of it is in the catalog
        patch(a, "A v3")
        patch(a, "A v4")
        delete(b)
        patch(c, "C v2")
        d, e = create("D, after the backup"), create("E, after the backup")
        f = create("F, after the backup")
        delete(f)
        wait_converged(st, timeout=60)

        # the restore, as documented: admin and relay stopped (the queues are drained:
        # converged), pg_restore --clean, then the fence before the admin serves writes
        st.proc("admin").stop()
        st.proc("relay").stop()
        restore = subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner",
                                  "-d", admin_db, str(dump)], capture_output=True, text=True,
                                 timeout=120)
        assert restore.returncode == 0, restore.stderr
        before = st.reconcile()  # what the restore did without the fence
        assert before.returncode == 1
        assert "ahead" in before.stdout and "unknown" in before.stdout, before.stdout

        dry = st.manage("admin_project", "restore_fence", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert st.outbox()[1] == 0  # a dry run records nothing
        fence = st.manage("admin_project", "restore_fence")
        assert fence.returncode == 0, fence.stdout + fence.stderr
        assert f"next product id {f + 1}" in fence.stdout, fence.stdout
        assert "raise above the catalog's version: 3" in fence.stdout, fence.stdout  # a, b, c
        assert "record as deleted: 2" in fence.stdout, fence.stdout  # d, e
        assert "restore fence" in fence.stdout

        st.start("admin")
        st.start("relay")
        wait_until(lambda: http_up(f"{st.admin}/admin/login/"), timeout=60,
                   message="the admin up again")
        s = st.admin_session()
        g = create("G, after the restore")
        assert g > f  # no id the catalog ever held is given again
        wait_converged(st, timeout=60)  # reconcile exits 0: no drift, nothing ahead
        final = st.reconcile()
        assert "no drift" in final.stdout and "ahead" not in final.stdout, final.stdout

        # the catalog shows the restored admin, and the new product
        admin_a = s.get(f"{st.admin}/api/products/{a}/", timeout=10).json()
        assert admin_a["version"] == 5  # above the catalog's v4
        assert in_catalog(a)["title"] == "A v2" and in_catalog(a)["version"] == 5
        assert in_catalog(b)["title"] == "B"  # deleted after the backup: back
        assert in_catalog(c)["title"] == "C" and in_catalog(c)["version"] == 3
        assert in_catalog(d) == 404 and in_catalog(e) == 404 and in_catalog(f) == 404
        assert in_catalog(gone) == 404
        assert in_catalog(g)["title"] == "G, after the restore" and in_catalog(g)["version"] == 1
        assert s.get(f"{st.admin}/api/products/{d}/", timeout=10).status_code == 404

        again = st.manage("admin_project", "restore_fence")
        assert again.returncode == 0 and "0 events queued" in again.stdout, again.stdout
