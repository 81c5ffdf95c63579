"""PostgreSQL maintenance from tests (through the `postgres` database)."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql

SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _connect():
    conn = psycopg2.connect(SERVER_URL)
    conn.autocommit = True
    return conn


def execute(query, params=None) -> None:
    with contextlib.closing(_connect()) as conn, conn.cursor() as cur:
        cur.execute(query, params)


def database_url(name: str, user: str | None = None, password: str | None = None) -> str:
    """The URL of database ``name`` on the test server, as its owner or as ``user``."""
    parts = urlsplit(SERVER_URL)
    if user is None:
        return f"{parts.scheme}://{parts.netloc}/{name}"
    login = user if password is None else f"{user}:{password}"
    return f"{parts.scheme}://{login}@{parts.hostname}:{parts.port or 5432}/{name}"


def role_drop(name: str) -> None:
    """Drop a login role (after the databases it had grants in are dropped)."""
    execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def database_exists(name: str) -> bool:
    with contextlib.closing(_connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cur.fetchone() is not None


def database_drop(name: str) -> None:
    execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def connections_block(db: str) -> None:
    """Refuse new connections to ``db`` and cut the existing ones (except ``keep_pid``)."""
    execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(db)))


def connections_terminate(db: str, keep_pid: int | None = None) -> None:
    execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> COALESCE(%s, 0)", [db, keep_pid])


def connections_allow(db: str) -> None:
    execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(db)))


def _cluster() -> tuple[str, str]:
    import pathlib

    version = sorted(p.name for p in pathlib.Path("/etc/postgresql").iterdir())[0]
    return version, "main"


@contextlib.contextmanager
def server_stopped():
    """Stop the whole PostgreSQL server for the block; always start it again."""
    import subprocess
    import time

    version, cluster = _cluster()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "stop",
                    "-m", "fast"], check=True, capture_output=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster,
                        "start"], capture_output=True, timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"])
            if ready.returncode == 0:
                break
            time.sleep(0.2)
