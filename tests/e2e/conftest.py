"""The whole system as `make run` starts it (bootstrap + Procfile under honcho), on fresh
databases, free ports and this session's RabbitMQ vhost."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest
import requests

from harness import pg, processes
from harness.stack import env_example, http_up
from harness.waiting import wait_until

REPO = processes.REPO
DB_ROLES = ("ADMIN_WEB", "ADMIN_RELAY", "CATALOG_WEB", "CATALOG_WORKER", "AUDIT_WORKER")


@dataclass
class Stack:
    admin: str
    catalog: str
    flower: str
    flower_auth: tuple[str, str]
    username: str
    password: str
    proc: processes.Proc
    env: dict[str, str]
    relay_metrics: str = ""
    worker_metrics: str = ""
    audit_metrics: str = ""

    def admin_session(self) -> requests.Session:
        s = requests.Session()
        r = s.post(f"{self.admin}/api/auth/token/",
                   json={"username": self.username, "password": self.password}, timeout=10)
        r.raise_for_status()
        s.headers["Authorization"] = f"Token {r.json()['token']}"
        return s


@pytest.fixture(scope="session")
def stack():
    suffix = uuid.uuid4().hex[:8]
    admin_db, catalog_db = f"e2e_admin_{suffix}", f"e2e_catalog_{suffix}"
    ports = {k: processes.free_port() for k in ("ADMIN_PORT", "CATALOG_PORT", "FLOWER_PORT",
                                                "RELAY_METRICS", "WORKER_METRICS",
                                                "AUDIT_METRICS")}
    values = env_example() | {k: str(v) for k, v in ports.items() if k.endswith("_PORT")} | {
        # not created here: bootstrap.py (make run) must create them
        "ADMIN_DATABASE_URL": pg.database_url(admin_db),
        "CATALOG_DATABASE_URL": pg.database_url(catalog_db),
        "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"],
        "ADMIN_RELAY_MAX_BACKOFF_SECONDS": "3",
        # the periodic anti-entropy check would repair the drift other tests make on purpose:
        # test_antientropy.py starts a relay of its own with a short interval
        "ADMIN_RECONCILE_EVERY_SECONDS": "0",
        # ... and the tests that edit the catalog by hand do it seconds after the events were
        # sent: no grace for events in flight (test_antientropy.py sets its own)
        "ADMIN_ANTIENTROPY_GRACE_SECONDS": "0",
        "ADMIN_WEB_WORKERS": "2", "CATALOG_WEB_WORKERS": "1",
        "DJANGO_SUPERUSER_PASSWORD": "e2e-" + uuid.uuid4().hex,
        # structured logs, as a log shipper would read them (test_ops.py parses them)
        "ADMIN_LOG_FORMAT": "json", "CATALOG_LOG_FORMAT": "json",
        "ADMIN_RELAY_METRICS_BIND": f"127.0.0.1:{ports['RELAY_METRICS']}",
        "CATALOG_WORKER_METRICS_BIND": f"127.0.0.1:{ports['WORKER_METRICS']}",
        "AUDIT_WORKER_METRICS_BIND": f"127.0.0.1:{ports['AUDIT_METRICS']}",
        "ADMIN_RELAY_HEARTBEAT_FILE": str(processes.ARTIFACTS / f"e2e-{suffix}.heartbeat"),
        "ADMIN_THROTTLE_USER": "1000000/second", "CATALOG_THROTTLE_ANON": "1000000/second",
        "CATALOG_THROTTLE_DIGESTS": "1000000/second",
        "ADMIN_THROTTLE_LOGIN": "1000000/second", "ADMIN_THROTTLE_ANON": "1000000/second",
        # throttle counts in a Redis database of the tests' own (not `make run`'s)
        "ADMIN_CACHE_URL": "redis://127.0.0.1:6379/13",
        "CATALOG_CACHE_URL": "redis://127.0.0.1:6379/13",
    }
    # Every process gets its own least-privilege broker user, as in compose.yaml: the e2e run
    # proves these permissions are enough (and the relay's are not more than publishing).
    vhost = os.environ["TEST_SESSION_VHOST"]
    for role in ("ADMIN", "CATALOG", "AUDIT", "FLOWER"):
        user, secret = f"e2e-{role.lower()}-{suffix}", uuid.uuid4().hex
        values[f"{role}_BROKER_USER"], values[f"{role}_BROKER_PASSWORD"] = user, secret
        values[f"{role}_BROKER_URL"] = f"amqp://{user}:{secret}@127.0.0.1:5672/{vhost}"
    # ... and its own least-privilege database role (scripts/db_roles.py, run by bootstrap):
    # the whole e2e suite proves the grants are enough. Roles are server-wide: unique names.
    db_roles = [f"e2e_{key.lower()}_{suffix}" for key in DB_ROLES]
    for key, role in zip(DB_ROLES, db_roles, strict=True):
        values[f"{key}_DATABASE_URL"] = pg.database_url(
            admin_db if key.startswith("ADMIN") else catalog_db, user=role,
            password=uuid.uuid4().hex)
    users = subprocess.run([sys.executable, "scripts/broker_users.py", "--rabbitmqctl",
                            "--vhost", vhost], cwd=REPO, env=processes.base_env(**values),
                           capture_output=True, text=True, timeout=120)
    assert users.returncode == 0, users.stdout + users.stderr
    processes.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env_file = processes.ARTIFACTS / "e2e.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env = processes.base_env(**values)
    env["PATH"] = f"{processes.VENV_BIN}{os.pathsep}{env['PATH']}"

    proc = None
    try:
        boot = subprocess.run([sys.executable, "scripts/bootstrap.py"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        assert f"created database {admin_db}" in boot.stdout, boot.stdout
        assert pg.database_exists(admin_db) and pg.database_exists(catalog_db)
        proc = processes.Proc("e2e-honcho", [str(processes.VENV_BIN / "honcho"), "start",
                                             "-f", "Procfile", "-e", str(env_file),
                                             "--no-colour"], env)
        stack = Stack(
            admin=f"http://127.0.0.1:{ports['ADMIN_PORT']}",
            catalog=f"http://127.0.0.1:{ports['CATALOG_PORT']}",
            flower=f"http://127.0.0.1:{ports['FLOWER_PORT']}",
            flower_auth=tuple(values["FLOWER_BASIC_AUTH"].split(":", 1)),
            username=values["DJANGO_SUPERUSER_USERNAME"],
            password=values["DJANGO_SUPERUSER_PASSWORD"], proc=proc, env=env,
            relay_metrics=f"http://{values['ADMIN_RELAY_METRICS_BIND']}/metrics",
            worker_metrics=f"http://{values['CATALOG_WORKER_METRICS_BIND']}/metrics",
            audit_metrics=f"http://{values['AUDIT_WORKER_METRICS_BIND']}/metrics",
        )
        wait_until(lambda: not proc.alive() or (
            http_up(f"{stack.admin}/admin/login/") and http_up(f"{stack.catalog}/api/products/")
            and http_up(f"{stack.flower}/", ok=(401,))
            and " ready." in proc.log() and "relay started" in proc.log()),
            timeout=90, message=lambda: f"the stack to start:\n{proc.tail(60)}")
        assert proc.alive(), proc.tail(60)
        yield stack
    finally:
        if proc is not None:
            proc.stop(timeout=30)
        for role in ("ADMIN", "CATALOG", "AUDIT", "FLOWER"):
            if f"{role}_BROKER_USER" in values:
                subprocess.run(["rabbitmqctl", "-q", "delete_user", values[f"{role}_BROKER_USER"]],
                               capture_output=True, timeout=60)
        pg.database_drop(admin_db)
        pg.database_drop(catalog_db)
        for role in db_roles:  # their grants went with the databases
            pg.role_drop(role)
