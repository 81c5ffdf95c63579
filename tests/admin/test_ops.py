"""Production plumbing of the admin web app: permissions, throttling, probes, metrics, trace ids.
Probes talk to the real PostgreSQL and RabbitMQ; failures are real (a closed port)."""

import json
import os

import pytest
from django.db import connections
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from admin_project.outbox.models import OutboxEvent
from harness.processes import free_port

GOOD = {"title": "Mug", "price": "9.90"}


# --- permissions -------------------------------------------------------------------------------
def test_login_without_model_permission_can_read_but_not_write(viewer_api):
    assert viewer_api.get("/api/products/").status_code == 200
    resp = viewer_api.post("/api/products/", GOOD, format="json")
    assert resp.status_code == 403
    assert "permission" in resp.json()["detail"]
    assert OutboxEvent.objects.count() == 0


def test_each_write_needs_its_own_permission(viewer, viewer_api, api):
    from django.contrib.auth.models import Permission

    pid = api.post("/api/products/", GOOD, format="json").json()["id"]
    viewer.user_permissions.add(Permission.objects.get(codename="change_product"))
    assert viewer_api.patch(f"/api/products/{pid}/", {"price": "1.00"},
                            format="json").status_code == 200
    assert viewer_api.delete(f"/api/products/{pid}/").status_code == 403
    assert viewer_api.post("/api/products/", GOOD, format="json").status_code == 403


# --- throttling --------------------------------------------------------------------------------
@pytest.fixture
def low_rates(monkeypatch):
    from django.core.cache import cache

    cache.clear()
    rates = {"user": "3/minute", "anon": "2/minute"}
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", rates)
    yield
    cache.clear()


def test_users_are_throttled(api, low_rates):
    codes = [api.get("/api/products/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = api.get("/api/products/")
    assert int(resp["Retry-After"]) > 0


def test_token_endpoint_is_throttled_against_guessing(anon, user, low_rates):
    codes = [anon.post("/api/auth/token/", {"username": "alice", "password": "wrong"},
                       format="json").status_code for _ in range(3)]
    assert codes == [400, 400, 429]


@pytest.fixture
def low_login_rate(monkeypatch):
    from django.core.cache import cache

    from common.throttling import LoginRateThrottle

    cache.clear()
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "3/minute"})
    yield
    cache.clear()


def test_admin_login_form_and_token_endpoint_share_the_password_throttle(client, user,
                                                                         low_login_rate):
    codes = [client.post("/admin/login/", {"username": "alice", "password": "wrong"}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # 200: the form again, with an error
    r = client.post("/api/auth/token/", {"username": "alice", "password": "s3cret-pass-1"},
                    content_type="application/json")
    assert r.status_code == 429 and int(r["Retry-After"]) > 0


def test_the_password_throttle_counts_per_account_name_across_addresses(client, user,
                                                                        low_login_rate):
    codes = [client.post("/admin/login/", {"username": "alice", "password": "wrong"},
                         REMOTE_ADDR=f"10.0.0.{i}").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


@pytest.mark.parametrize("name", ["ali\x00ce", "a b\nc\td", "é" * 5000, "名前" * 80])
def test_any_account_name_is_counted_without_a_warning_or_a_5xx(anon, db, name, low_login_rate,
                                                                 recwarn):
    # the per-account key is a hash: control characters, spaces, lone surrogates and huge names
    # are all valid cache keys (no CacheKeyWarning), and each name is still counted on its own
    body = json.dumps({"username": name, "password": "wrong"})
    codes = [anon.post("/api/auth/token/", body, content_type="application/json").status_code
             for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    assert not [w for w in recwarn if "CacheKey" in type(w.message).__name__], list(recwarn)


@pytest.mark.parametrize("name", [" alice", "alice\t", "ａlice", "ALICE", "ａｌｉｃｅ  "])
def test_the_account_throttle_counts_every_spelling_that_logs_in_as_one_account(
        anon, client, user, name, low_login_rate):
    # DRF trims the name and the admin's form NFKC-normalises it: all of these reach "alice"
    first = [anon.post("/api/auth/token/", {"username": "alice", "password": "wrong"},
                       format="json", REMOTE_ADDR="10.1.0.1").status_code for _ in range(2)]
    other = client.post("/admin/login/", {"username": name, "password": "wrong"},
                        REMOTE_ADDR="10.1.0.2").status_code
    last = anon.post("/api/auth/token/", {"username": name, "password": "wrong"},
                     format="json", REMOTE_ADDR="10.1.0.3").status_code
    assert first + [other, last] == [400, 400, 200, 429]


def test_x_forwarded_for_does_not_make_a_new_client(anon, user, low_login_rate):
    codes = [anon.post("/api/auth/token/", {"username": f"nobody{i}", "password": "wrong"},
                       format="json", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
             for i in range(4)]
    assert codes == [400, 400, 400, 429]  # one address (REMOTE_ADDR), whatever the header says


@pytest.mark.parametrize("body", ['{"username": "a\\udfff", "password": "x"}',
                                  '{"\\ud800": 1, "title": "t", "price": "1.00"}'])
def test_lone_surrogates_anywhere_in_json_are_a_400(anon, api, db, body, low_login_rate):
    assert anon.post("/api/auth/token/", body, content_type="application/json"
                     ).status_code == 400
    r = api.post("/api/products/", body, content_type="application/json")
    assert r.status_code == 400 and "surrogate" in r.json()["detail"], r.content


def test_throttles_count_in_redis_shared_by_every_process(settings):
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    from django.core.cache import cache
    cache.set("probe", 1)
    assert cache.get("probe") == 1


# --- probes ------------------------------------------------------------------------------------
def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


@pytest.mark.broker
def test_readyz_checks_database_and_broker(client, db):
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["status"] == "ok"
    assert {k: v["status"] for k, v in body["checks"].items()} == {"database": "ok",
                                                                   "broker": "ok"}


def test_readyz_names_an_unreachable_broker(client, db, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["database"]["status"] == "ok"
    assert "Connection refused" in body["checks"]["broker"]["error"]


@pytest.mark.django_db(transaction=True)
def test_readyz_names_an_unreachable_database(client):
    conn = connections["default"]
    saved = conn.settings_dict["PORT"]
    conn.close()
    conn.settings_dict["PORT"] = str(free_port())
    try:
        resp = client.get("/readyz")
    finally:
        conn.close()
        conn.settings_dict["PORT"] = saved
    assert resp.status_code == 503
    body = resp.json()
    assert "database" in body["failing"]
    assert "OperationalError" in body["checks"]["database"]["error"]


# --- metrics -----------------------------------------------------------------------------------
def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.fixture
def fresh_metrics(monkeypatch):
    from common import metrics

    monkeypatch.setattr(metrics, "METRICS_CACHE_SECONDS", 0.0)


def test_metrics_show_outbox_backlog_and_http(client, api, fresh_metrics):
    body = client.get("/metrics").content.decode()
    assert _metric(body, "outbox_pending_events") == 0
    assert _metric(body, "outbox_oldest_pending_age_seconds") == 0
    api.post("/api/products/", GOOD, format="json")
    api.post("/api/products/", GOOD, format="json")
    body = client.get("/metrics").content.decode()
    assert _metric(body, "outbox_pending_events") == 2
    assert _metric(body, "outbox_oldest_pending_age_seconds") >= 0
    assert "django_http_requests_total_by_method_total" in body
    assert 'django_http_responses_total_by_status_total{status="201"}' in body


def test_a_flood_of_scrapes_renders_the_page_once_per_second(client, api, monkeypatch):
    from common import metrics

    monkeypatch.setattr(metrics, "METRICS_CACHE_SECONDS", 60.0)
    first = client.get("/metrics").content
    api.post("/api/products/", GOOD, format="json")
    assert all(client.get("/metrics").content == first for _ in range(20))  # one rendering
    monkeypatch.setattr(metrics, "METRICS_CACHE_SECONDS", 0.0)
    assert _metric(client.get("/metrics").content.decode(), "outbox_pending_events") == 1


def test_metrics_answer_while_the_database_is_down(client, transactional_db, fresh_metrics):
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    conn.settings_dict["PORT"] = str(free_port())  # nothing listens there
    try:
        r = client.get("/metrics")
    finally:
        conn.close()
        conn.settings_dict.update(saved)
    assert r.status_code == 200
    body = r.content.decode()
    assert _metric(body, "outbox_database_up") == 0 and "outbox_pending_events" not in body
    assert _metric(client.get("/metrics").content.decode(), "outbox_database_up") == 1


# --- trace ids ---------------------------------------------------------------------------------
def test_request_id_follows_the_change_into_the_outbox(api):
    rid = "req-0123456789abcdef"
    resp = api.post("/api/products/", GOOD, format="json", HTTP_X_REQUEST_ID=rid)
    assert resp["X-Request-ID"] == rid
    row = OutboxEvent.objects.get()
    assert row.payload["trace_id"] == rid


def test_a_missing_or_unsafe_request_id_is_replaced(api):
    first = api.post("/api/products/", GOOD, format="json")
    bad = api.post("/api/products/", GOOD, format="json",
                   HTTP_X_REQUEST_ID="x\nINFO forged log line")
    for resp in (first, bad):
        assert len(resp["X-Request-ID"]) == 32 and "\n" not in resp["X-Request-ID"]
    assert first["X-Request-ID"] != bad["X-Request-ID"]
    ids = [row.payload["trace_id"] for row in OutboxEvent.objects.order_by("id")]
    assert ids == [first["X-Request-ID"], bad["X-Request-ID"]]


def test_json_logs_carry_the_trace_id(capsys):
    import logging.config

    from common.logs import logging_config
    from common.trace import trace_id_set

    logging.config.dictConfig(logging_config(level="INFO", fmt="json"))
    try:
        trace_id_set("trace-abcdef012345")
        logging.getLogger("admin_project.test").info("hello %s", "there", extra={"events": 2})
        trace_id_set(None)
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        from django.conf import settings

        logging.config.dictConfig(settings.LOGGING)
    record = json.loads(line)
    assert record["message"] == "hello there"
    assert record["trace_id"] == "trace-abcdef012345"
    assert record["level"] == "INFO" and record["logger"] == "admin_project.test"
    assert record["events"] == 2 and "time" in record


# --- metric files of killed process trees --------------------------------------------------------
def test_metric_dirs_of_dead_process_trees_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    import subprocess
    import sys

    from common import metrics

    monkeypatch.setattr(metrics.tempfile, "gettempdir", lambda: str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"admin_project.wsgi-metrics-pid{int(gone.stdout)}-abc123"
    alive = tmp_path / f"catalog-worker-metrics-pid{os.getpid()}-def456"
    other = tmp_path / "unrelated-metrics-dir"
    for d in (dead, alive, other):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"x")
    metrics._stale_dirs_remove()
    assert not dead.exists()
    assert alive.exists() and other.exists()


@pytest.mark.broker
def test_a_flood_of_probes_checks_the_broker_once_per_period(client, db, settings,
                                                             monkeypatch):
    from common import health

    settings.PROBE_CACHE_SECONDS = 30
    calls = []
    real = health.CHECKS["broker"]
    monkeypatch.setitem(health.CHECKS, "broker", lambda: calls.append(1) or real())
    monkeypatch.setattr(health._checks, "_at", float("-inf"))
    codes = {client.get("/readyz").status_code for _ in range(60)}
    assert codes == {200} and len(calls) == 1  # one real broker connection for 60 probes
    monkeypatch.setattr(health._checks, "_at", float("-inf"))  # the next test checks afresh
