"""Health probes for the web apps (and the commands that compose runs as healthchecks).

``/healthz``: the process serves requests (liveness; touches nothing else).
``/readyz``: the database and the broker answer; 503 naming the failing part otherwise.
The broker is checked with the process's own (least-privilege) broker URL.

The checks' result is kept for ``PROBE_CACHE_SECONDS`` (2 s) per process and computed by one
request at a time: a flood of probes opens at most one broker connection per process per
period, whatever the request rate."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_TIMEOUT = 3.0


def database_check() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def broker_check() -> None:
    from kombu import Connection

    url = broker_url()
    with Connection(url, connect_timeout=CHECK_TIMEOUT,
                    transport_options={"read_timeout": CHECK_TIMEOUT,
                                       "write_timeout": CHECK_TIMEOUT}) as conn:
        conn.ensure_connection(max_retries=0)


def broker_url() -> str:
    # Like Celery: the CELERY_BROKER_URL environment variable wins over the setting.
    return os.environ.get("CELERY_BROKER_URL") or settings.CELERY_BROKER_URL


CHECKS = {"database": database_check, "broker": broker_check}


class Memo:
    """``fn()``'s result, recomputed at most once per ``ttl()`` seconds, by one caller at a time
    (the others wait for it and share it)."""

    def __init__(self, fn: Callable[[], Any], ttl: Callable[[], float]) -> None:
        self.fn, self.ttl = fn, ttl
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: Any = None

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl():
                self._value = self.fn()
                self._at = time.monotonic()
            return self._value


def probe_ttl() -> float:
    return getattr(settings, "PROBE_CACHE_SECONDS", 2.0)


_URL_CREDENTIALS = re.compile(r"://[^/@\s]*@")


def _error(exc: Exception) -> str:
    """What a probe says of a failure: the kind and message, never a URL's credentials."""
    return _URL_CREDENTIALS.sub("://***@", f"{type(exc).__name__}: {exc}")[:300]


def checks_run() -> tuple[bool, dict[str, dict]]:
    return _checks.get()


def _checks_run() -> tuple[bool, dict[str, dict]]:
    results, ok = {}, True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named
            ok = False
            results[name] = {"status": "fail", "error": _error(exc)}
        else:
            results[name] = {"status": "ok"}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return ok, results


_checks = Memo(_checks_run, probe_ttl)


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    ok, results = checks_run()
    failing = [name for name, r in results.items() if r["status"] != "ok"]
    body = {"status": "ok" if ok else "unavailable", "checks": results}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=200 if ok else 503)
