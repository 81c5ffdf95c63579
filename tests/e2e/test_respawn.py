"""A crash of one process does not take the others down under `make run` (honcho alone stops
every process when one exits): scripts/respawn.py starts the dead one again."""

from __future__ import annotations

import os
import signal
import time

import requests

from harness import processes
from harness.waiting import wait_until


def worker_main(stack) -> int:
    pid = processes.celery_worker_main(stack.proc.pid)
    assert pid, f"no single catalog worker main process: {processes.descendants(stack.proc.pid)}"
    return pid


def test_a_killed_worker_is_started_again_and_nothing_else_stops(stack):
    admin = stack.admin_session()
    old = worker_main(stack)
    os.kill(old, signal.SIGKILL)

    wait_until(lambda: f"(pid {old}) died with signal 9" in stack.proc.log(), timeout=30,
               message=lambda: f"respawn to notice the worker's death:\n{stack.proc.tail(30)}")
    # honcho kept everything else running: the admin answers while the worker is away
    assert stack.proc.alive(), stack.proc.tail(40)
    assert requests.get(f"{stack.admin}/healthz", timeout=5).status_code == 200

    def new_worker() -> int | None:
        try:
            pid = worker_main(stack)
        except AssertionError:
            return None
        return pid if pid != old else None

    wait_until(new_worker, timeout=60, message=lambda: f"a new worker:\n{stack.proc.tail(30)}")
    # and the new worker consumes: a product written now reaches the catalog
    title = f"after the crash {time.time_ns()}"
    r = admin.post(f"{stack.admin}/api/products/", timeout=10,
                   json={"title": title, "price": "1.00"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    def in_catalog() -> bool:
        r = requests.get(f"{stack.catalog}/api/products/{pid}/", timeout=5)
        return r.status_code == 200 and r.json()["title"] == title

    wait_until(in_catalog, timeout=60,
               message=lambda: f"the product in the catalog:\n{stack.proc.tail(30)}")
    assert stack.proc.alive()
