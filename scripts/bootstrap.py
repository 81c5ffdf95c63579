"""Prepare a local machine for `make run`: check services, create the databases of every Django
project (``*_project``) and migrate them, collect static files, create the superuser,
grant each process's database role (scripts/db_roles.py). Idempotent; safe to run every time.

Reads the same environment as the apps (.env at the repository root, then the process env)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
import psycopg2
from kombu import Connection
from psycopg2 import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from catalog_project.topology import SUBSCRIBERS  # noqa: E402
from product_events.broker import shared_exchanges_declare  # noqa: E402

env = environ.Env()
if (REPO / ".env").is_file():
    env.read_env(str(REPO / ".env"), overwrite=False)

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "RabbitMQ": "rabbitmq-server -detached && rabbitmqctl await_startup",
}


def fail(service: str, where: str, exc: Exception) -> None:
    print(f"\n{service} is not reachable at {where}: {exc}".rstrip(), file=sys.stderr)
    print(f"Start it with:\n    {HOW_TO_START[service]}\n"
          f"(or point the URL in .env elsewhere), then run `make run` again.", file=sys.stderr)
    sys.exit(2)


def check_broker(url: str) -> None:
    where = urlsplit(url)._replace(netloc=urlsplit(url).hostname + f":{urlsplit(url).port or 5672}")
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            # the shared exchanges' owner declares them (no application user may configure them)
            shared_exchanges_declare(conn)
    except Exception as exc:  # noqa: BLE001
        fail("RabbitMQ", where.geturl(), exc)
    print(f"RabbitMQ   ok  ({where.geturl()}; shared exchanges declared)")


def database_ensure(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = parts._replace(path="/postgres").geturl()
    try:
        conn = psycopg2.connect(server, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        fail("PostgreSQL", f"{parts.hostname}:{parts.port or 5432}", exc)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction (nor in `with conn`)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone():
            print(f"PostgreSQL ok  (database {name} exists)")
        else:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"PostgreSQL ok  (created database {name})")
    conn.close()


WEB_PROJECTS = ("admin_project", "catalog_project")


def projects() -> list[str]:
    """Every Django project of the repository (``<name>_project/manage.py``; a subscriber with a
    project of its own too), the admin's and the catalog's first. Each one's database is
    ``<NAME>_DATABASE_URL`` (default ``products_<name>`` on the local server)."""
    found = sorted(p.parent.name for p in REPO.glob("*_project/manage.py"))
    return [*WEB_PROJECTS, *(p for p in found if p not in WEB_PROJECTS)]


def manage(project: str, *args: str) -> None:
    subprocess.run([sys.executable, str(REPO / project / "manage.py"), *args], check=True,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})


def main() -> None:
    check_broker(env("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//"))
    for project in projects():
        name = project.removesuffix("_project")
        database_ensure(env(f"{name.upper()}_DATABASE_URL",
                            default=f"postgres://postgres@127.0.0.1:5432/products_{name}"))
        manage(project, "migrate", "--no-input", "-v", "0")
        if project in WEB_PROJECTS:
            manage(project, "collectstatic", "--no-input", "-v", "0")
        print(f"{project}: migrated" + (", static files collected" if project in WEB_PROJECTS
                                        else ""))
    manage("admin_project", "ensure_superuser")
    # after every migrate, so the tables of a new migration get their grants too
    subprocess.run([sys.executable, str(REPO / "scripts" / "db_roles.py")], check=True,
                   env=dict(os.environ))
    # a release that changed a subscriber's queue arguments: replace the queue now, before any
    # worker starts (docs/operations.md, "Upgrading the queue"; nothing is lost, and a queue
    # still consumed elsewhere is refused and left as it is, with the reason)
    for subscriber in SUBSCRIBERS:  # catalog_project/topology.py: every subscriber
        out = subprocess.run([sys.executable, str(REPO / "catalog_project" / "manage.py"),
                              "topology", "upgrade", "--if-exists", "--subscriber", subscriber],
                             env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                             text=True, timeout=300)
        lines = (out.stdout + out.stderr).strip().splitlines()
        print(f"{subscriber} queue: {lines[-1] if lines else 'checked'}")


if __name__ == "__main__":
    main()
