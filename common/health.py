"""Health probes for the web apps (and the commands that compose runs as healthchecks).

``/healthz``: the process serves requests (liveness; touches nothing else).
``/readyz``: the database and the broker answer; 503 naming the failing part otherwise.
The broker is checked with the process's own (least-privilege) broker URL."""

from __future__ import annotations

import os
import time

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


def checks_run() -> tuple[bool, dict[str, dict]]:
    results, ok = {}, True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named
            ok = False
            results[name] = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"status": "ok"}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return ok, results


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
