"""The whole system on fresh databases, a fresh vhost and free ports, with each Procfile process
started on its own so that tests can kill and restart any of them (honcho would stop them all)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import psycopg2
import requests

from harness import amqp, pg, processes
from harness.vhosts import vhost_create, vhost_delete
from harness.waiting import wait_until

REPO = processes.REPO
# the worker's one line per message (workers/handling.py)
RESULT_RE = re.compile(r"applied (\d+), stale (\d+), parked (\d+): ")


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def procfile() -> dict[str, str]:
    out = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, cmd = line.split(":", 1)
            out[name.strip()] = cmd.strip()
    return out


def http_up(url: str, ok=(200,)) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in ok
    except requests.RequestException:
        return False


@dataclass
class Stack:
    name: str
    env: dict[str, str]
    admin: str
    catalog: str
    procs: dict[str, list[processes.Proc]] = field(default_factory=dict)

    # --- processes ---
    def start(self, name: str, command: str | None = None) -> processes.Proc:
        """Start Procfile process ``name`` (or ``command`` in its place)."""
        runs = self.procs.setdefault(name, [])
        proc = processes.Proc(f"{self.name}-{name}-{len(runs)}",
                              ["sh", "-c", command or procfile()[name]], self.env)
        runs.append(proc)
        return proc

    def proc(self, name: str) -> processes.Proc:
        return self.procs[name][-1]

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        proc = self.proc(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.popen.wait(30)

    def restart(self, name: str, command: str | None = None) -> processes.Proc:
        self.kill(name)
        return self.start(name, command)

    def wait_worker_ready(self, timeout: float = 60) -> None:
        proc = self.proc("worker")
        wait_until(lambda: " ready." in proc.log() or not proc.alive(), timeout=timeout,
                   message=lambda: f"worker ready:\n{proc.tail()}")

    def _worker_processes(self) -> list[tuple[int, int]]:
        """(pid, ppid) of the celery processes in the current worker's process group."""
        pgid = self.proc("worker").pid
        # -ww: never truncate args to a terminal width (pytest has one)
        out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,ppid=,pgid=,args="],
                             capture_output=True, text=True).stdout
        rows = []
        for line in out.splitlines():
            pid, ppid, group, args = line.split(None, 3)
            is_celery = args.split()[0].endswith(("python", "python3", "celery"))
            if int(group) == pgid and is_celery and "worker" in args:
                rows.append((int(pid), int(ppid)))
        return rows

    def worker_main_pid(self) -> int:
        rows = self._worker_processes()
        pids = {pid for pid, _ in rows}
        mains = [pid for pid, ppid in rows if ppid not in pids]
        assert len(mains) == 1, (f"worker main process not found in group "
                                 f"{self.proc('worker').pid}: {rows}\n{self.proc('worker').tail()}")
        return mains[0]

    def worker_children(self) -> list[int]:
        main = self.worker_main_pid()
        return [pid for pid, ppid in self._worker_processes() if ppid == main]

    def logs(self, name: str) -> str:
        return "\n".join(p.log() for p in self.procs.get(name, []))

    def worker_totals(self) -> dict[str, int]:
        applied = stale = parked = 0
        for a, s, p in RESULT_RE.findall(self.logs("worker")):
            applied, stale, parked = applied + int(a), stale + int(s), parked + int(p)
        return {"applied": applied, "stale": stale, "parked": parked}

    # --- state ---
    def admin_session(self) -> requests.Session:
        s = requests.Session()
        r = s.post(f"{self.admin}/api/auth/token/", timeout=10, json={
            "username": self.env["DJANGO_SUPERUSER_USERNAME"],
            "password": self.env["DJANGO_SUPERUSER_PASSWORD"]})
        r.raise_for_status()
        s.headers["Authorization"] = f"Token {r.json()['token']}"
        return s

    def sql(self, which: str, query: str, params=None):
        url = self.env[f"{which.upper()}_DATABASE_URL"]
        with contextlib.closing(psycopg2.connect(url, connect_timeout=5)) as conn, conn, \
                conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    def outbox(self) -> tuple[int, int]:
        """(events recorded, still pending: not sent, not set aside)."""
        ((total, pending),) = self.sql(
            "admin", "SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL AND "
                     "set_aside_at IS NULL) FROM products_outboxevent")
        return total, pending

    def set_aside(self) -> int:
        """Outbox events the relay set aside (it can never send them as they are)."""
        ((n,),) = self.sql("admin", "SELECT count(*) FROM products_outboxevent "
                                    "WHERE set_aside_at IS NOT NULL")
        return n

    def manage(self, project: str, *args: str, timeout: float = 300):
        return subprocess.run([sys.executable, f"{project}/manage.py", *args], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def generate(self, count: int, updates: int = 0, deletes: int = 0) -> subprocess.Popen:
        """Start generating events in the background (returns the process)."""
        return subprocess.Popen([sys.executable, "admin_project/manage.py", "generate_products",
                                 "--count", str(count), "--updates", str(updates),
                                 "--deletes", str(deletes), "--seed", "7"],
                                cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def reconcile(self) -> subprocess.CompletedProcess:
        return self.manage("admin_project", "reconcile", "--catalog-url", self.catalog)

    def converged(self) -> bool:
        """admin == catalog (reconcile finds no drift) and the outbox is drained."""
        return self.outbox()[1] == 0 and self.reconcile().returncode == 0

    def flower_tasks(self, state: str) -> dict:
        url = f"http://127.0.0.1:{self.env['FLOWER_PORT']}/api/tasks?state={state}"
        auth = tuple(self.env["FLOWER_BASIC_AUTH"].split(":", 1))
        resp = requests.get(url, auth=auth, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def dlq_distinct(self, queue: str = "catalog.products.dlq") -> tuple[int, int]:
        """(messages, distinct messages by body and park reason) in ``queue``, read without
        removing any (a publish that timed out may still arrive later: copies)."""
        with amqp.broker_connection_to(self.env["CELERY_BROKER_URL"]) as conn:
            channel = conn.channel()
            seen, total = set(), 0
            while (raw := channel.basic_get(queue, no_ack=False)) is not None:
                total += 1
                headers = raw.properties.get("application_headers") or {}
                seen.add((repr(raw.body), str(headers.get("x-park-reason"))))
            channel.close()  # unacked: all back in the queue
            return total, len(seen)

    def dlq_depth(self, queue: str = "catalog.products.dlq") -> int:
        with amqp.broker_connection_to(self.env["CELERY_BROKER_URL"]) as conn:
            _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
            return count


@contextlib.contextmanager
def running_stack(name: str, *, start=("admin", "catalog", "relay", "worker"),
                  overrides: dict[str, str] | None = None, broker=None):
    """``broker``: a ``harness.private_rabbit.PrivateNode`` to run on instead of the shared
    RabbitMQ (for faults that must not touch it, such as an alarm)."""
    create, delete = ((broker.vhost_create, broker.vhost_delete) if broker is not None
                      else (vhost_create, vhost_delete))
    suffix = uuid.uuid4().hex[:8]
    vhost = f"{name}-{suffix}"
    admin_db, catalog_db = f"{name}_admin_{suffix}", f"{name}_catalog_{suffix}"
    ports = {k: processes.free_port() for k in ("ADMIN_PORT", "CATALOG_PORT", "FLOWER_PORT",
                                                "RELAY_METRICS", "WORKER_METRICS",
                                                "AUDIT_METRICS")}
    values = env_example() | {k: str(v) for k, v in ports.items() if k.endswith("_PORT")} | {
        "ADMIN_RELAY_METRICS_BIND": f"127.0.0.1:{ports['RELAY_METRICS']}",
        "CATALOG_WORKER_METRICS_BIND": f"127.0.0.1:{ports['WORKER_METRICS']}",
        "AUDIT_WORKER_METRICS_BIND": f"127.0.0.1:{ports['AUDIT_METRICS']}",
        "ADMIN_RELAY_HEARTBEAT_FILE": str(processes.ARTIFACTS / f"{name}-{suffix}.heartbeat"),
        # the tests poll hard; throttling has its own tests
        "ADMIN_THROTTLE_USER": "1000000/second", "ADMIN_THROTTLE_ANON": "1000000/second",
        "ADMIN_THROTTLE_LOGIN": "1000000/second",
        "CATALOG_THROTTLE_ANON": "1000000/second", "CATALOG_THROTTLE_DIGESTS": "1000000/second",
        "ADMIN_CACHE_URL": "redis://127.0.0.1:6379/12", "CATALOG_CACHE_URL": "redis://127.0.0.1:6379/12",
        # the harness starts, kills and restarts each process itself
        "RESPAWN_CRASHED": "false",
        # no periodic anti-entropy repairs in the middle of a measured or injected fault
        "ADMIN_RECONCILE_EVERY_SECONDS": "0",
        # reconcile's drift is what the catalog lacks now: the tests edit it by hand right after
        # the events were sent, and lose events on purpose (no grace for events in flight)
        "ADMIN_ANTIENTROPY_GRACE_SECONDS": "0",
        "ADMIN_DATABASE_URL": pg.database_url(admin_db),
        "CATALOG_DATABASE_URL": pg.database_url(catalog_db),
        "CELERY_BROKER_URL": create(vhost),
        "DJANGO_SUPERUSER_PASSWORD": "faults-" + uuid.uuid4().hex,
        "ADMIN_DEBUG": "false", "CATALOG_DEBUG": "false",
        "ADMIN_RELAY_MAX_BACKOFF_SECONDS": "2",
        "CATALOG_RETRY_BACKOFF_MAX": "4", "AUDIT_RETRY_BACKOFF_MAX": "4",
        "ADMIN_WEB_WORKERS": "2", "CATALOG_WEB_WORKERS": "2",
    } | (overrides or {})
    values["CATALOG_URL"] = f"http://127.0.0.1:{ports['CATALOG_PORT']}"
    env = processes.base_env(**values)
    env["PATH"] = f"{processes.VENV_BIN}{os.pathsep}{env['PATH']}"
    stack = Stack(name=name, env=env, admin=f"http://127.0.0.1:{ports['ADMIN_PORT']}",
                  catalog=values["CATALOG_URL"])
    try:
        boot = subprocess.run([sys.executable, "scripts/bootstrap.py"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        for proc in start:
            stack.start(proc)
        wait_until(lambda: ("admin" not in start or http_up(f"{stack.admin}/admin/login/"))
                   and ("catalog" not in start or http_up(f"{stack.catalog}/api/products/")),
                   timeout=60, message="web apps up")
        if "worker" in start:
            stack.wait_worker_ready()
        if "flower" in start:
            wait_until(lambda: http_up(f"http://127.0.0.1:{ports['FLOWER_PORT']}/", ok=(401,)),
                       timeout=60, message="Flower up")
        yield stack
    finally:
        for runs in stack.procs.values():
            for proc in runs:
                proc.stop(timeout=20)
        delete(vhost)
        pg.database_drop(admin_db)
        pg.database_drop(catalog_db)


def wait_converged(stack: Stack, timeout: float) -> float:
    """Seconds until converged (fails after ``timeout``)."""
    t0 = time.monotonic()
    wait_until(stack.converged, timeout=timeout, interval=0.5,
               message=lambda: f"convergence\n{stack.reconcile().stdout}\n"
                               f"outbox (total, pending) = {stack.outbox()}\n"
                               f"worker: {stack.proc('worker').tail(15)}")
    return time.monotonic() - t0
