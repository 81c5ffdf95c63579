"""docs/extending.md, followed literally: on a copy of the repository, every step of "Add a third
subscriber" (write each file, append each snippet, run each command), then the system started
as `make run` starts it (bootstrap, then the Procfile under honcho). The new subscriber's
deletions arrive over the bus from HTTP writes, dated when they happened (also when a backfill
sends them again); its queue, its dead-letter command, its broker user role, its database URL
and its metrics exporter exist without any other step, and the operator's alert rules cover
its worker from its own series (promtool, on the scrape job its one line adds)."""

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
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from harness import pg, processes
from harness.stack import env_example, http_up
from harness.waiting import wait_until

REPO = processes.REPO
DOC = REPO / "docs" / "extending.md"
STEP = re.compile(r"<!-- step: (write|append|run)\s*(\S*) -->\n```[a-z]*\n(.*?)```", re.S)
PROMTOOL = shutil.which("promtool")


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
        # step 5: its own database URL, which step 4's line passes as CATALOG_DATABASE_URL
        # (here the owner's, told apart by its application_name)
        "SEARCH_WORKER_DATABASE_URL": pg.database_url(catalog_db)
        + f"?application_name=ext-search-{suffix}",
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
    # step 6: the scrape config with its job is still valid, and names the new job
    job = scrape_job_added(copy, tmp_path)

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

        # it connects with SEARCH_WORKER_DATABASE_URL (step 5), not the catalog's URL
        assert rows(env["CATALOG_DATABASE_URL"],
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    f"'ext-search-{suffix}'")[0][0] >= 1, honcho.tail(40)

        # the deletion is dated when it happened in the admin, and stays so when step 7's
        # backfill (`resync`) sends it again to an indexer that lost it
        deleted_at = rows(env["ADMIN_DATABASE_URL"], "SELECT deleted_at FROM "
                          f"products_producttombstone WHERE product_id = {gone}")[0][0]

        def dated():
            return rows(env["CATALOG_DATABASE_URL"],
                        "SELECT version, deleted_at FROM search_deletedproduct")

        assert dated() == [(3, deleted_at)]
        rows(env["CATALOG_DATABASE_URL"], "DELETE FROM search_deletedproduct RETURNING 1")
        resync = subprocess.run([sys.executable, "admin_project/manage.py", "resync"], cwd=copy,
                                env=env, capture_output=True, text=True, timeout=120)
        assert resync.returncode == 0, resync.stdout + resync.stderr
        wait_until(lambda: dated() != [], timeout=30,
                   message=lambda: f"the backfilled deletion\n{honcho.tail(40)}")
        assert dated() == [(3, deleted_at)], (dated(), deleted_at)

        metrics = requests.get(f"http://{values['SEARCH_WORKER_METRICS_BIND']}/metrics",
                               timeout=5).text
        applied = re.search(r"^search_events_applied_total(?:\{[^}]*\})? (\S+)$", metrics, re.M)
        assert applied and float(applied.group(1)) >= 1, metrics[:2000]
        # the operator's rules see this worker, from its own series
        rules_cover_the_worker(copy, tmp_path, job, metrics)
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


def scrape_job_added(copy: Path, tmp_path: Path) -> str:
    """promtool accepts the copy's prometheus.yml (step 6's line appended); the new job's name."""
    assert PROMTOOL, "promtool (Debian's prometheus package) is missing: `make test` installs it"
    ops = copy / "ops" / "prometheus"
    secret = tmp_path / "flower_password"
    secret.write_text("x")
    config = ops / "prometheus.yml"
    config.write_text(config.read_text().replace("/run/secrets/flower_password", str(secret)))
    checked = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"], cwd=ops,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = [j["job_name"] for j in YAML(typ="safe").load(config.read_text())["scrape_configs"]]
    new = [j for j in jobs if j.startswith("search")]
    assert len(new) == 1, jobs
    return new[0]


def rules_cover_the_worker(copy: Path, tmp_path: Path, job: str, metrics: str) -> None:
    """promtool's rule unit tests over the copy's alerts.yml (unchanged by the doc), fed with
    the series the search worker really exports (their names and labels, from its /metrics),
    under the job its scrape line gives them: each subscriber rule fires for it."""
    found: dict[str, list[dict]] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.startswith("search_"):
                found.setdefault(sample.name, []).append(sample.labels)
    needed = ("search_paused", "search_messages_in_flight", "search_events_applied_total",
              "search_events_stale_total", "search_event_lag_seconds_bucket")
    assert all(name in found for name in needed), sorted(found)

    def series(name: str, values: str, instance: str, **only) -> list[dict]:
        out = []
        for labels in found[name]:
            if all(labels.get(k) == v for k, v in only.items()):
                text = ", ".join(f'{k}="{v}"' for k, v in
                                 sorted({**labels, "job": job, "instance": instance}.items()))
                out.append({"series": f"{name}{{{text}}}", "values": values})
        assert out, (name, only, found[name])
        return out

    def firing(input_series: list[dict], at: str, *alerts: str) -> dict:
        return {"interval": "1m", "input_series": input_series, "promql_expr_test": [{
            "expr": f'sum by (alertname) (ALERTS{{alertstate="firing", job="{job}"}})',
            "eval_time": at,
            "exp_samples": [{"labels": f'{{alertname="{a}"}}', "value": 1} for a in alerts]}]}

    buckets = found["search_event_lag_seconds_bucket"]
    tests = [
        # its exporter stops answering (the container paused): ExporterDown
        firing([{"series": f'up{{job="{job}", instance="10.0.0.9:9104"}}',
                 "values": "1 1 0 0 0 0"}], "5m", "ExporterDown"),
        # its container leaves DNS: WorkerTargetsLost
        firing([{"series": f'up{{job="{job}", instance="10.0.0.9:9104"}}',
                 "values": "1x10 stale"}], "25m", "WorkerTargetsLost"),
        # paused (its database does not take writes): SubscriberPaused only
        firing(series("search_paused", "1x30", "s:1", reason="database")
               + series("search_messages_in_flight", "4x30", "s:1")
               + series("search_events_applied_total", "1x30", "s:1")
               + series("search_events_stale_total", "0x30", "s:1"), "25m", "SubscriberPaused"),
        # holds messages, writes nothing, not paused: WorkerHoldsMessagesWithoutProgress
        firing(series("search_paused", "0x30", "s:2", reason="database")
               + series("search_messages_in_flight", "4x30", "s:2")
               + series("search_events_applied_total", "1x30", "s:2")
               + series("search_events_stale_total", "0x30", "s:2"), "25m",
               "WorkerHoldsMessagesWithoutProgress"),
        # every deletion applied half an hour after it happened: EventLagHigh
        firing([s for labels in buckets for s in series(
            "search_event_lag_seconds_bucket", "0+10x20" if labels["le"] == "+Inf" else "0x20",
            "s:3", le=labels["le"])], "15m", "EventLagHigh"),
    ]
    unit = tmp_path / "search.alerts.test.yml"
    with open(unit, "w") as f:
        YAML().dump({"rule_files": [str(copy / "ops" / "prometheus" / "alerts.yml")],
                     "evaluation_interval": "1m", "tests": tests}, f)
    tested = subprocess.run([PROMTOOL, "test", "rules", str(unit)], capture_output=True,
                            text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
