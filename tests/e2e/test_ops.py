"""Operations on the running system (`make run`'s Procfile under honcho, JSON logs, every
process with its own least-privilege broker user): probes, healthchecks, metrics, trace ids."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import uuid

import pytest
import requests

from harness import processes
from harness.waiting import wait_until

REPO = processes.REPO


def metric(text: str, name: str, labels: str = "") -> float:
    """Sum of the samples of ``name`` whose label set contains ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m and labels in (m.group(1) or ""):
            total += float(m.group(2))
            found = True
    assert found, f"{name}{{{labels}}} not in the metrics"
    return total


def json_logs(stack) -> list[tuple[str, dict]]:
    """(process, record) for every JSON log line honcho printed ('hh:mm:ss relay.1 | {...}')."""
    out = []
    for line in stack.proc.log().splitlines():
        head, sep, body = line.partition(" | ")
        if sep and body.startswith("{"):
            try:
                out.append((head.split()[-1].split(".")[0], json.loads(body)))
            except json.JSONDecodeError:
                pass
    return out


def test_probes_on_both_web_apps(stack):
    for base in (stack.admin, stack.catalog):
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        resp = requests.get(f"{base}/readyz", timeout=10)
        assert resp.status_code == 200, resp.text
        assert {k: v["status"] for k, v in resp.json()["checks"].items()} == {
            "database": "ok", "broker": "ok"}


def test_relay_healthcheck_of_compose(stack):
    argv = [sys.executable, "admin_project/manage.py", "relay", "--check"]
    ok = subprocess.run(argv, cwd=REPO, env=stack.env, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "relay ok" in ok.stdout
    stale = subprocess.run(argv + ["--max-age", "0"], cwd=REPO, env=stack.env,
                           capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "relay unhealthy: last heartbeat" in stale.stderr
    missing = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60,
                             env=stack.env | {"ADMIN_RELAY_HEARTBEAT_FILE": "/nonexistent/hb"})
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr


def test_one_trace_id_follows_a_change_through_every_process(stack):
    rid = "e2e-" + uuid.uuid4().hex
    session = stack.admin_session()
    resp = session.post(f"{stack.admin}/api/products/", headers={"X-Request-ID": rid},
                        json={"title": "Traced", "price": "1.00"}, timeout=10)
    assert resp.status_code == 201 and resp.headers["X-Request-ID"] == rid
    pid = resp.json()["id"]

    def catalog_row():
        r = requests.get(f"{stack.catalog}/api/products/{pid}/", timeout=5)
        return r.status_code == 200 and r.json()

    row = wait_until(catalog_row, timeout=20, message="the product in the catalog")
    assert row["last_trace_id"] == rid

    def lines_with_rid():
        seen = {}
        for proc, rec in json_logs(stack):
            if rec.get("trace_id") == rid or rid in rec.get("trace_ids", []):
                seen.setdefault(proc, rec)
        return seen if {"admin", "relay", "worker"} <= set(seen) else None

    seen = wait_until(lines_with_rid, timeout=20,
                      message=lambda: f"log lines with {rid}:\n{stack.proc.tail(30)}")
    assert seen["admin"]["message"] == f"product #{pid} created (v1)"
    assert f"product.created #{pid} v1" in seen["relay"]["message"]
    assert f"product.created #{pid} v1" in seen["worker"]["message"]
    for rec in seen.values():
        assert {"time", "level", "logger", "process", "message"} <= set(rec)


def test_metrics_of_every_process(stack):
    session = stack.admin_session()
    for i in range(5):
        assert session.post(f"{stack.admin}/api/products/", timeout=10,
                            json={"title": f"m{i}", "price": "1.00"}).status_code == 201

    def settled():
        relay = requests.get(stack.relay_metrics, timeout=5).text
        worker = requests.get(stack.worker_metrics, timeout=5).text
        audit = requests.get(stack.audit_metrics, timeout=5).text
        published = metric(relay, "relay_events_published_total")
        applied = metric(worker, "catalog_events_applied_total")
        recorded = metric(audit, "audit_events_applied_total")
        return published >= 5 and applied >= 5 and recorded >= 5 and (relay, worker, audit)

    relay, worker, audit = wait_until(settled, timeout=30, message="relay and worker metrics")
    assert metric(relay, "relay_heartbeat_timestamp_seconds") > 0
    assert metric(worker, "catalog_event_lag_seconds_count") >= 5
    assert metric(worker, "catalog_events_stale_total") >= 0
    # each worker counts under its own subscriber's name, on its own port
    assert metric(audit, "audit_event_lag_seconds_count") >= 5
    assert "audit_events" not in worker and "catalog_events" not in audit

    admin = requests.get(f"{stack.admin}/metrics", timeout=10).text
    # two gunicorn workers served the POSTs; their counters are summed (multiprocess mode)
    assert metric(admin, "django_http_requests_total_by_method_total", 'method="POST"') >= 5
    assert metric(admin, "outbox_pending_events") >= 0
    catalog = requests.get(f"{stack.catalog}/metrics", timeout=10).text
    assert metric(catalog, "catalog_broker_up") == 1
    for queue in ("catalog.products", "catalog.products.dlq", "audit.products",
                  "audit.products.dlq"):  # read with the catalog's least-privilege broker user
        assert metric(catalog, "catalog_queue_messages", f'queue="{queue}"') >= 0, queue
        assert metric(catalog, "catalog_subscriber_queue_present", f'queue="{queue}"') == 1
    assert metric(catalog, "catalog_subscriber_queue_consumers",
                  'queue="catalog.products",role="queue"') >= 1
    for name in ("catalog", "audit"):  # what waits for a retry (tests/catalog/test_outage.py)
        assert metric(catalog, "catalog_subscriber_delayed_messages",
                      f'subscriber="{name}"') >= 0
    # what each worker holds unacknowledged, on its own exporter
    assert metric(worker, "catalog_messages_in_flight") >= 0
    assert metric(audit, "audit_messages_in_flight") >= 0
    flower = requests.get(f"{stack.flower}/metrics", auth=stack.flower_auth, timeout=10)
    assert flower.status_code == 200 and "flower_events_total" in flower.text
    assert requests.get(f"{stack.flower}/metrics", timeout=10).status_code == 401


@pytest.mark.parametrize("project", ["admin", "catalog"])
def test_production_settings_pass_the_deploy_check(project):
    p = project.upper()
    env = processes.base_env(**{  # production defaults (a local .env may relax them)
        f"{p}_SECRET_KEY": secrets.token_urlsafe(50), f"{p}_DEBUG": "false",
        f"{p}_SECURE_SSL_REDIRECT": "true", f"{p}_SECURE_COOKIES": "true",
        "DJANGO_SETTINGS_MODULE": f"{project}_project.settings.production"})
    result = subprocess.run(
        [sys.executable, f"{project}_project/manage.py", "check", "--deploy",
         "--fail-level", "WARNING"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_refuses_the_placeholder_secret():
    env = processes.base_env(ADMIN_SECRET_KEY="change-me-admin-secret-key",
                             DJANGO_SETTINGS_MODULE="admin_project.settings.production")
    result = subprocess.run([sys.executable, "admin_project/manage.py", "check", "--deploy",
                             "--fail-level", "WARNING"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "security.W009" in result.stderr


def test_web_processes_log_only_json_and_access_lines_carry_the_trace_id(stack):
    """With *_LOG_FORMAT=json, every line every process prints is one JSON object (a log
    shipper parses them all: gunicorn's, Django's, the workers' banner and shutdown notices,
    Python warnings, the respawn wrapper's), and each access line names the request's trace
    id, as do Django's own lines about a request ("Not Found: ...")."""
    rids = {"admin": "e2e-acc-" + uuid.uuid4().hex, "catalog": "e2e-acc-" + uuid.uuid4().hex}
    session = stack.admin_session()
    assert session.post(f"{stack.admin}/api/products/", headers={"X-Request-ID": rids["admin"]},
                        json={"title": "Logged", "price": "1.00"}, timeout=10).status_code == 201
    assert requests.get(f"{stack.catalog}/api/products/", timeout=10,
                        headers={"X-Request-ID": rids["catalog"]}).status_code == 200
    missing = "e2e-404-" + uuid.uuid4().hex
    assert requests.get(f"{stack.catalog}/api/products/999999999/", timeout=10,
                        headers={"X-Request-ID": missing}).status_code == 404
    wait_until(lambda: any(rec.get("logger") == "django.request" and rec.get("trace_id") == missing
                           for p, rec in json_logs(stack) if p == "catalog"), timeout=15,
               message="Django's 'Not Found' line with the request's trace id")

    def access(proc):
        return next((rec for p, rec in json_logs(stack) if p == proc
                     and rec.get("logger") == "gunicorn.access"
                     and rec.get("trace_id") == rids[proc]), None)

    for proc in ("admin", "catalog"):
        rec = wait_until(lambda proc=proc: access(proc), timeout=15,
                         message=lambda proc=proc: f"a {proc} access line:\n{stack.proc.tail(20)}")
        assert rec["status"] == ("201" if proc == "admin" else "200"), rec
        assert rec["method"] in ("POST", "GET") and rec["path"].startswith("/api/products/")
        assert rec["duration_ms"] >= 0 and "level" in rec and "time" in rec
    plain = []
    for line in stack.proc.log().splitlines():
        head, sep, body = line.partition(" | ")
        proc = head.split()[-1].split(".")[0] if sep else ""
        if sep and proc != "system":  # every process (honcho's own lines aside)
            try:
                json.loads(body)
            except json.JSONDecodeError:
                plain.append(line)
    assert not plain, "\n".join(plain[:10])


def _readme_commands(prefix: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("prefix,ready,port_var", [
    ("CATALOG_WORKER_METRICS_BIND=", " ready.", "CATALOG_WORKER_METRICS_BIND"),
    ("ADMIN_RELAY_METRICS_BIND=", "relay started", "ADMIN_RELAY_METRICS_BIND"),
])
def test_the_readme_commands_for_a_second_process_work_as_printed(stack, prefix, ready,
                                                                  port_var):
    """README 'Scaling workers': the second worker / relay next to the running ones starts,
    serves its own metrics, and the first one keeps its port and heartbeat file."""
    (command,) = _readme_commands(prefix)
    bind = command.split()[0].split("=", 1)[1]
    proc = processes.Proc(f"readme-{port_var.lower()}", ["bash", "-c", command], stack.env)
    try:
        wait_until(lambda: ready in proc.log() or not proc.alive(), timeout=60,
                   message=lambda: proc.tail())
        assert proc.alive(), proc.tail()
        seen = []

        def scraped():
            try:
                return requests.get(f"http://{bind}/metrics", timeout=5).status_code == 200
            except requests.RequestException as exc:
                seen.append(repr(exc))
                return None

        wait_until(scraped, timeout=20,
                   message=lambda: f"metrics on {bind}: {seen[-1:]}\n{proc.tail()}")
        assert "metrics exporter not started" not in proc.log(), proc.tail()
    finally:
        proc.stop()


def test_the_readme_command_to_resize_a_running_pool_works_as_printed(stack):
    """README 'Scaling workers': `control pool_grow 2` on the running worker (the thread pool of
    workers/pool.py) adds two to what it runs at once; `pool_shrink` takes them back."""
    (command,) = _readme_commands("celery -A workers.catalog control pool_grow")

    def concurrency() -> int:
        out = subprocess.run([str(processes.VENV_BIN / "celery"), "-A", "workers.catalog",
                              "inspect", "stats", "-j", "-t", "10"], env=stack.env, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        stats = json.loads(out.stdout[out.stdout.index("{"):])
        (node,) = [v for k, v in stats.items() if k.startswith("catalog@")]
        return node["pool"]["max-concurrency"]

    before = concurrency()
    grown = subprocess.run(["bash", "-c", command], env=stack.env, cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert grown.returncode == 0 and "pool will grow" in grown.stdout, grown
    assert concurrency() == before + 2
    shrunk = subprocess.run(["bash", "-c", command.replace("pool_grow", "pool_shrink")],
                            env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shrunk.returncode == 0, shrunk
    assert concurrency() == before
