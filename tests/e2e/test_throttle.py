"""Throttles hold across every web process (issue 12, finding 7): the Procfile's admin under
gunicorn with 3 worker processes, counting in Redis, lets exactly the configured number of
requests through however the requests are spread over the processes."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from harness import processes
from harness.stack import http_up, procfile
from harness.waiting import wait_until

CACHE_DB = 11  # this test's own Redis database (flushed)


@pytest.fixture
def throttled_admin(stack):
    redis.Redis.from_url(f"redis://127.0.0.1:6379/{CACHE_DB}").flushdb()
    port = processes.free_port()
    env = stack.env | {
        "ADMIN_PORT": str(port), "ADMIN_WEB_WORKERS": "3",
        "ADMIN_THROTTLE_ANON": "3/minute", "ADMIN_THROTTLE_LOGIN": "3/minute",
        "ADMIN_CACHE_URL": f"redis://127.0.0.1:6379/{CACHE_DB}",
        "ADMIN_RELAY_METRICS_BIND": "", "RESPAWN_CRASHED": "false",
    }
    proc = processes.Proc(f"throttled-admin-{port}", ["sh", "-c", procfile()["admin"]], env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: not proc.alive() or http_up(f"{base}/healthz"), timeout=60,
                   message=lambda: f"the throttled admin:\n{proc.tail()}")
        assert proc.alive(), proc.tail()
        # all 3 gunicorn workers up (each answers /healthz, which is not throttled)
        wait_until(lambda: proc.log().count("Booting worker") >= 3, timeout=60,
                   message=lambda: proc.tail())
        yield base
    finally:
        proc.stop()


def burst(n: int, call) -> list[int]:
    # in parallel, so the requests are spread over the worker processes
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: call().status_code, range(n)))


def test_token_endpoint_limit_holds_across_web_processes(throttled_admin):
    codes = burst(12, lambda: requests.post(
        f"{throttled_admin}/api/auth/token/", timeout=30,
        json={"username": f"nobody-{uuid.uuid4().hex}", "password": "wrong"}))
    assert sorted(codes) == [400] * 3 + [429] * 9, codes


def test_admin_login_limit_holds_across_web_processes(throttled_admin):
    def wrong_password():
        s = requests.Session()
        page = s.get(f"{throttled_admin}/admin/login/", timeout=30)
        return s.post(f"{throttled_admin}/admin/login/", timeout=30, data={
            "username": "admin", "password": "wrong",
            "csrfmiddlewaretoken": s.cookies.get("csrftoken", ""), "next": "/admin/"},
            headers={"Referer": page.url})

    codes = burst(12, wrong_password)
    assert sorted(codes) == [200] * 3 + [429] * 9, codes
