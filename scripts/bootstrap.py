"""Prepare the databases and the broker before the processes start, for `make run` and for
compose's `migrate` service (`--settings production`): check services, declare the shared
exchanges, create the databases of every Django project (``*_project``) and migrate them (each
with its own settings), collect static files, create the superuser, grant each process's
database role (scripts/db_roles.py), upgrade every subscriber's queue whose arguments changed.
Idempotent; safe to run every time.

Reads the same environment as the apps (.env at the repository root, then the process env).
It acts as the owner: ``*_DATABASE_URL`` of each project, ``CELERY_BROKER_URL`` a broker user
that may configure every entity of its virtual host (the shared exchanges, every subscriber's
queues)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from urllib.parse import urlsplit

import environ
import psycopg2
from amqp import exceptions as amqp_errors
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


def broker_refusal(url: str, exc: Exception) -> str | None:
    """What is wrong when RabbitMQ answered but refused (a running broker: starting it would not
    help), with the fix; None when it did not answer at all."""
    parts = urlsplit(url)
    user = parts.username or "guest"
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    text = str(exc)
    if isinstance(exc, amqp_errors.NotAllowed) and "not found" in text:
        return (f"RabbitMQ at {parts.hostname}:{parts.port or 5672} has no virtual host "
                f"{vhost!r} (the path of CELERY_BROKER_URL): {text}\nCreate it and let the user "
                f"in:\n    rabbitmqctl add_vhost {vhost}\n    rabbitmqctl set_permissions -p "
                f"{vhost} {user} '.*' '.*' '.*'\n(or correct the URL's path: `//` is the "
                f"default vhost `/`), then run this again.")
    if isinstance(exc, amqp_errors.NotAllowed):
        return (f"RabbitMQ refused user {user!r} the virtual host {vhost!r}: {text}\nGrant it:"
                f"\n    rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'\n"
                f"then run this again.")
    if isinstance(exc, amqp_errors.AccessRefused) and "Login was refused" in text:
        return (f"RabbitMQ refused the login of user {user!r} (the user and password of "
                f"CELERY_BROKER_URL): {text}\nCorrect them in .env, or create the user:\n"
                f"    rabbitmqctl add_user {user} '<password>'\n    rabbitmqctl set_permissions "
                f"-p {vhost} {user} '.*' '.*' '.*'\nthen run this again.")
    if isinstance(exc, amqp_errors.AccessRefused):
        return (f"RabbitMQ refused user {user!r} an operation in {vhost!r}: {text}\n"
                f"CELERY_BROKER_URL must be the broker's owner here (a user that may configure "
                f"every entity of the vhost: the shared exchanges `products` and `celeryev`), "
                f"not a process's least-privilege user (scripts/broker_users.py).")
    return None


def check_broker(url: str) -> None:
    where = urlsplit(url)._replace(netloc=urlsplit(url).hostname + f":{urlsplit(url).port or 5672}")
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            # the shared exchanges' owner declares them (no application user may configure them)
            shared_exchanges_declare(conn)
    except Exception as exc:  # noqa: BLE001
        refused = broker_refusal(url, exc)
        if refused is None:
            fail("RabbitMQ", where.geturl(), exc)
        print(f"\n{refused}", file=sys.stderr)
        sys.exit(2)
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


def project_env(project: str, flavour: str | None) -> dict[str, str]:
    """The environment of ``project``'s manage.py: its own settings module, never another
    project's (a DJANGO_SETTINGS_MODULE set for one project would migrate that project's
    database again); ``<project>.settings.<flavour>`` when it has one, else its manage.py's
    default; and its database URL (``database_url``)."""
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out.pop("DJANGO_SETTINGS_MODULE", None)
    if flavour and (REPO / project / "settings" / f"{flavour}.py").is_file():
        out["DJANGO_SETTINGS_MODULE"] = f"{project}.settings.{flavour}"
    name = project.removesuffix("_project").upper()
    out[f"{name}_DATABASE_URL"] = database_url(project)
    return out


def database_url(project: str) -> str:
    """``<NAME>_DATABASE_URL``; for a project other than the admin's and the catalog's, by
    default its own database ``products_<name>`` on the catalog's server, as the catalog's
    owner (so that compose's `migrate` creates it there too)."""
    name = project.removesuffix("_project")
    fallback = f"postgres://postgres@127.0.0.1:5432/products_{name}"
    if project not in WEB_PROJECTS:
        catalog = env("CATALOG_DATABASE_URL", default="")
        if catalog:
            fallback = urlsplit(catalog)._replace(path=f"/products_{name}").geturl()
    return env(f"{name.upper()}_DATABASE_URL", default="") or fallback


FLAVOUR: str | None = None  # --settings


def manage(project: str, *args: str) -> None:
    subprocess.run([sys.executable, str(REPO / project / "manage.py"), *args], check=True,
                   env=project_env(project, FLAVOUR))


def main() -> None:
    global FLAVOUR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", metavar="FLAVOUR", default=None,
                        help="run each project with its <project>.settings.FLAVOUR (compose: "
                             "production); default: each manage.py's own (local)")
    FLAVOUR = parser.parse_args().settings
    check_broker(env("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//"))
    for project in projects():
        database_ensure(database_url(project))
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
    # As the owner (CELERY_BROKER_URL), not each subscriber's own user: bootstrap declared the
    # shared exchanges with it, and a <NAME>_BROKER_URL meant for another host (.env is
    # compose's env_file too) must not send the upgrade elsewhere.
    owner = {f"{name.upper()}_BROKER_URL": "" for name in SUBSCRIBERS}
    for subscriber in SUBSCRIBERS:  # catalog_project/topology.py: every subscriber
        out = subprocess.run([sys.executable, str(REPO / "catalog_project" / "manage.py"),
                              "topology", "upgrade", "--if-exists", "--subscriber", subscriber],
                             env={**project_env("catalog_project", FLAVOUR), **owner},
                             capture_output=True, text=True, timeout=300)
        lines = (out.stdout + out.stderr).strip().splitlines()
        print(f"{subscriber} queue: {lines[-1] if lines else 'checked'}")


if __name__ == "__main__":
    main()
