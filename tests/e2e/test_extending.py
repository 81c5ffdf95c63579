"""docs/extending.md, followed literally: on a copy of the repository, every step of "Add a third
subscriber" (write each file, append each snippet, run each command), then the system started
as `make run` starts it (bootstrap, then the Procfile under honcho). The new subscriber's
deletions arrive over the bus from HTTP writes; its queue, its dead-letter command, its broker
user role and its metrics exporter exist without any other step."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import requests

from harness import pg, processes
from harness.stack import env_example, http_up
from harness.waiting import wait_until

REPO = processes.REPO
DOC = REPO / "docs" / "extending.md"
STEP = re.compile(r"<!-- step: (write|append|run)\s*(\S*) -->\n```[a-z]*\n(.*?)```", re.S)


def doc_steps() -> list[tuple[str, str, str]]:
    text = DOC.read_text()
    section = text[text.index("## Add a third subscriber"):]
    section = section[:section.index("\n## ", 3)]
    return STEP.findall(section)


def test_the_doc_lists_its_steps_in_a_form_this_test_follows():
    steps = doc_steps()
    kinds = [k for k, _, _ in steps]
    assert {"write", "append", "run"} <= set(kinds), steps
    # and every fenced block of the section is a step (none a reader must apply by hand)
    text = DOC.read_text()
    section = text[text.index("## Add a third subscriber"):]
    section = section[:section.index("\n## ", 3)]
    assert section.count("```") // 2 == len(steps)


def repo_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():  # (a file deleted in the working tree is not copied)
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def rows(url: str, query: str) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(url, connect_timeout=5)) as conn, conn, \
            conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def test_a_third_subscriber_added_as_docs_extending_says_gets_its_events(tmp_path):
    copy = tmp_path / "repo"
    repo_copy(copy)
    suffix = uuid.uuid4().hex[:8]
    admin_db, catalog_db = f"ext_admin_{suffix}", f"ext_catalog_{suffix}"
    ports = {k: processes.free_port() for k in ("ADMIN_PORT", "CATALOG_PORT", "SEARCH_METRICS")}
    # a vhost of its own: the session's stack runs workers named catalog@<host> and
    # audit@<host> on the session vhost, whose remote-control queues are exclusive
    vhost = f"ext-{suffix}"
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    search_user, search_secret = f"ext-search-{suffix}", uuid.uuid4().hex
    values = env_example() | {
        "ADMIN_PORT": str(ports["ADMIN_PORT"]), "CATALOG_PORT": str(ports["CATALOG_PORT"]),
        "ADMIN_DATABASE_URL": pg.database_url(admin_db),
        "CATALOG_DATABASE_URL": pg.database_url(catalog_db),
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        # the new subscriber as step 4 says: a broker user of its own role
        "SEARCH_BROKER_USER": search_user, "SEARCH_BROKER_PASSWORD": search_secret,
        "SEARCH_BROKER_URL": f"amqp://{search_user}:{search_secret}@127.0.0.1:5672/{vhost}",
        "SEARCH_WORKER_METRICS_BIND": f"127.0.0.1:{ports['SEARCH_METRICS']}",
        "ADMIN_RECONCILE_EVERY_SECONDS": "0", "ADMIN_WEB_WORKERS": "1",
        "DJANGO_SUPERUSER_PASSWORD": "ext-" + uuid.uuid4().hex,
        "ADMIN_THROTTLE_USER": "1000000/second", "ADMIN_THROTTLE_LOGIN": "1000000/second",
        "ADMIN_THROTTLE_ANON": "1000000/second",
        "ADMIN_CACHE_URL": "redis://127.0.0.1:6379/13",
        "CATALOG_CACHE_URL": "redis://127.0.0.1:6379/13",
        "ADMIN_RELAY_HEARTBEAT_FILE": str(tmp_path / "relay.heartbeat"),
    }
    env = processes.base_env(**values)
    env["PATH"] = f"{processes.VENV_BIN}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(copy)  # the copy's packages, not the installed checkout's
    broker_users = {f"{role}_BROKER_{k}": f"ext-{role.lower()}-{suffix}" if k == "USER"
                    else uuid.uuid4().hex
                    for role in ("ADMIN", "CATALOG", "AUDIT", "FLOWER")
                    for k in ("USER", "PASSWORD")}
    env_file = tmp_path / "ext.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    # --- the doc's steps, literally ---
    for kind, path, body in doc_steps():
        if kind == "write":
            (copy / path).parent.mkdir(parents=True, exist_ok=True)
            (copy / path).write_text(body)
        elif kind == "append":
            with open(copy / path, "a") as f:
                f.write("\n" + body)
        else:
            out = subprocess.run(["bash", "-ec", body], cwd=copy, env=env, capture_output=True,
                                 text=True, timeout=180)
            assert out.returncode == 0, (body, out.stdout + out.stderr)
    assert list((copy / "catalog_project" / "search" / "migrations").glob("0001_*.py"))

    honcho = None
    try:
        # step 4: scripts/broker_users.py, as compose's `broker-users` service runs it, now
        # also creates the new subscriber's role (every role wants its user set)
        users = subprocess.run([sys.executable, "scripts/broker_users.py", "--rabbitmqctl",
                                "--vhost", vhost], cwd=copy, env=env | broker_users,
                               capture_output=True, text=True, timeout=120)
        assert users.returncode == 0, users.stdout + users.stderr
        assert f"broker user {search_user!r}" in users.stdout, users.stdout

        # `make run`: bootstrap, then the Procfile (the processes this test needs; the relay
        # publishes only what some queue takes, so the other subscribers run too)
        boot = subprocess.run([sys.executable, "scripts/bootstrap.py"], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=300)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        assert "search queue:" in boot.stdout, boot.stdout  # its queue upgrade is bootstrap's
        assert rows(env["CATALOG_DATABASE_URL"],
                    "SELECT count(*) FROM search_deletedproduct") == [(0,)]  # migrated
        honcho = processes.Proc(f"ext-honcho-{suffix}", [
            str(processes.VENV_BIN / "honcho"), "start", "-f", "Procfile", "-e", str(env_file),
            "--no-colour", "admin", "relay", "worker", "audit", "search"], env, cwd=copy)
        admin = f"http://127.0.0.1:{ports['ADMIN_PORT']}"
        wait_until(lambda: not honcho.alive() or (
            http_up(f"{admin}/admin/login/") and "relay started" in honcho.log()
            and all(f"{n}@" in honcho.log() for n in ("catalog", "audit", "search"))
            and honcho.log().count(" ready.") >= 3),
            timeout=90, message=lambda: f"the stack to start:\n{honcho.tail(60)}")
        assert honcho.alive(), honcho.tail(60)

        s = requests.Session()
        token = s.post(f"{admin}/api/auth/token/", timeout=10, json={
            "username": values["DJANGO_SUPERUSER_USERNAME"],
            "password": values["DJANGO_SUPERUSER_PASSWORD"]}).json()["token"]
        s.headers["Authorization"] = f"Token {token}"
        kept = s.post(f"{admin}/api/products/", json={"title": "kept", "price": "1.00"},
                      timeout=10).json()["id"]
        gone = s.post(f"{admin}/api/products/", json={"title": "gone", "price": "2.00"},
                      timeout=10).json()["id"]
        assert s.patch(f"{admin}/api/products/{gone}/", json={"price": "3.00"},
                       timeout=10).status_code == 200
        assert s.delete(f"{admin}/api/products/{gone}/", timeout=10).status_code == 204

        def indexed():
            return rows(env["CATALOG_DATABASE_URL"],
                        "SELECT product_id, version FROM search_deletedproduct")

        wait_until(lambda: indexed() == [(gone, 3)], timeout=30,
                   message=lambda: f"the deletion indexed: {indexed()}\n{honcho.tail(40)}")
        assert kept not in [pid for pid, _ in indexed()]  # its pattern: deletions only

        metrics = requests.get(f"http://{values['SEARCH_WORKER_METRICS_BIND']}/metrics",
                               timeout=5).text
        applied = re.search(r"^search_events_applied_total(?:\{[^}]*\})? (\S+)$", metrics, re.M)
        assert applied and float(applied.group(1)) >= 1, metrics[:2000]
        dlq = subprocess.run([sys.executable, "catalog_project/manage.py", "dlq",
                              "--subscriber", "search", "list"], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=60)
        assert dlq.returncode == 0, dlq.stdout + dlq.stderr
    finally:
        if honcho is not None:
            honcho.stop(timeout=30)
        for user in [search_user, *(v for k, v in broker_users.items() if k.endswith("_USER"))]:
            subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True,
                           timeout=60)
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True,
                       timeout=60)
        pg.database_drop(admin_db)
        pg.database_drop(catalog_db)
