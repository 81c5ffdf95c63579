"""Least-privilege PostgreSQL roles, one per process, defined once and applied as each database's
owner (ADMIN_DATABASE_URL / CATALOG_DATABASE_URL, the role migrations run as). Idempotent: run
after every migrate (`scripts/bootstrap.py` does; compose's `migrate` service too), so tables
added by a later migration get their grants.

Each role is given by the URL its process connects with; its user name and password come from
that URL (no secret in the repository). An unset URL, or one naming the owner itself, is skipped:
that process then connects as the owner (`make run` with nothing set).

  ADMIN_WEB_DATABASE_URL       admin web: products, tombstones, outbox inserts, auth, sessions,
                               the Django admin; also `resync` / `reconcile` run with it
  ADMIN_RELAY_DATABASE_URL     relay: read, claim, mark and purge outbox rows; its anti-entropy
                               check reads products and queues repairs
  CATALOG_WEB_DATABASE_URL     catalog web: SELECT on the catalog and audit tables it serves
  CATALOG_WORKER_DATABASE_URL  catalog worker: upsert catalog products; nothing of the admin's
  AUDIT_WORKER_DATABASE_URL    audit worker: the audit log only (insert, count deliveries)

`restore_fence` (it moves the id sequence) and `migrate` run as the owner.
Every grant is written out below, per table; a table no role is listed for is the owner's alone.
PUBLIC loses CONNECT and TEMPORARY on both databases and CREATE on their `public` schema, so a
role reaches only the database it is granted, and no role creates or drops anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import unquote, urlsplit

import psycopg2
from psycopg2 import sql

# (database it belongs to, {table: privileges}) per role; the owner has everything.
_ADMIN_AUTH = ("auth_user", "auth_group", "auth_user_groups", "auth_group_permissions",
               "auth_user_user_permissions")
ROLES: dict[str, tuple[str, dict[str, str]]] = {
    "ADMIN_WEB": ("ADMIN", {
        "products_product": "SELECT, INSERT, UPDATE, DELETE",
        "products_producttombstone": "SELECT, INSERT, UPDATE, DELETE",
        # `resync` and `reconcile --repair`, run in the admin's container (not by the relay)
        "products_resynccheckpoint": "SELECT, INSERT, UPDATE, DELETE",
        # the request path inserts; the Django admin lists, returns set-aside rows to pending
        # and deletes sent ones; the outbox gauges on /metrics count
        "products_outboxevent": "SELECT, INSERT, UPDATE, DELETE",
        **{t: "SELECT, INSERT, UPDATE, DELETE" for t in _ADMIN_AUTH},
        "authtoken_token": "SELECT, INSERT, UPDATE, DELETE",
        "django_session": "SELECT, INSERT, UPDATE, DELETE",
        "django_admin_log": "SELECT, INSERT, UPDATE, DELETE",
        # written by migrate (the owner); read by auth and the Django admin
        "django_content_type": "SELECT",
        "auth_permission": "SELECT",
    }),
    "ADMIN_RELAY": ("ADMIN", {
        # claim (UPDATE ... FOR UPDATE SKIP LOCKED), mark sent or set aside, purge sent rows;
        # its anti-entropy check (admin_project/products/antientropy.py) queues repairs
        "products_outboxevent": "SELECT, INSERT, UPDATE, DELETE",
        # the anti-entropy check digests products and tombstones, and raises the version of a
        # product whose content drifted at the same version (SELECT ... FOR UPDATE, UPDATE)
        "products_product": "SELECT, UPDATE",
        "products_producttombstone": "SELECT",
    }),
    "CATALOG_WEB": ("CATALOG", {
        "catalog_product": "SELECT",
        "audit_productchange": "SELECT",
    }),
    "CATALOG_WORKER": ("CATALOG", {
        # one INSERT ... ON CONFLICT DO UPDATE ... RETURNING per batch; tombstones, no DELETE
        "catalog_product": "SELECT, INSERT, UPDATE",
    }),
    "AUDIT_WORKER": ("CATALOG", {
        # one row per change: INSERT ... ON CONFLICT (event_id) DO UPDATE counts a delivery
        "audit_productchange": "SELECT, INSERT, UPDATE",
    }),
}

# the sequences a table's serial or identity columns draw from
_SEQUENCES = """
SELECT s.relname FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_class t ON t.oid = d.refobjid
WHERE t.relname = %s AND t.relnamespace = 'public'::regnamespace AND d.deptype IN ('a', 'i')
"""

OWNER_DEFAULTS = {"ADMIN": "postgres://postgres@127.0.0.1:5432/products_admin",
                  "CATALOG": "postgres://postgres@127.0.0.1:5432/products_catalog"}


def owner_url(project: str) -> str:
    return os.environ.get(f"{project}_DATABASE_URL") or OWNER_DEFAULTS[project]


def roles_from_env() -> list[tuple[str, str, str | None, str, dict[str, str]]]:
    """(role key, user, password, project, grants) of every role whose URL is set."""
    out = []
    for key, (project, grants) in ROLES.items():
        url = os.environ.get(f"{key}_DATABASE_URL")
        if not url:
            continue
        parts, owner = urlsplit(url), urlsplit(owner_url(project))
        if parts.path != owner.path:
            sys.exit(f"{key}_DATABASE_URL names database {parts.path.lstrip('/')!r}, "
                     f"not {project}_DATABASE_URL's {owner.path.lstrip('/')!r}")
        user = unquote(parts.username or "")
        if not user or user == unquote(owner.username or ""):
            continue  # the owner itself: nothing to restrict
        password = unquote(parts.password) if parts.password is not None else None
        out.append((key, user, password, project, grants))
    return out


def _role_ensure(cur, user: str, password: str | None) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user])
    verb = "ALTER" if cur.fetchone() else "CREATE"
    query = sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                    "NOREPLICATION NOBYPASSRLS").format(sql.Identifier(user))
    if password is not None:
        query += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    cur.execute(query)


def apply(project: str, roles: list) -> None:
    url = owner_url(project)
    conn = psycopg2.connect(url, connect_timeout=10)
    conn.autocommit = True
    database = sql.Identifier(urlsplit(url).path.lstrip("/"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {r[0] for r in cur.fetchall()}
            # nobody reaches this database, makes temporary tables or creates objects unless
            # granted here (the owner keeps all of it)
            cur.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                        .format(database))
            cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for key, user, password, role_project, grants in roles:
                _role_ensure(cur, user, password)
                role = sql.Identifier(user)
                if role_project != project:  # the other project's roles: nothing here at all
                    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(database, role))
                    continue
                missing = set(grants) - tables
                if missing:
                    sys.exit(f"{project} database lacks {sorted(missing)}: run migrate first")
                cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}")
                            .format(role))
                cur.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}")
                            .format(role))
                cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(database, role))
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
                cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
                for table, privileges in sorted(grants.items()):
                    cur.execute(sql.SQL("GRANT " + privileges + " ON TABLE {} TO {}")
                                .format(sql.Identifier(table), role))
                    if "INSERT" in privileges:  # the sequences of its id columns
                        cur.execute(_SEQUENCES, [table])
                        for (seq,) in cur.fetchall():
                            cur.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}")
                                        .format(sql.Identifier(seq), role))
                print(f"database role {user!r} ({key}) on {project.lower()} database: "
                      + "; ".join(f"{t} {p}" for t, p in sorted(grants.items())))
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    roles = roles_from_env()
    for project in ("ADMIN", "CATALOG"):
        apply(project, roles)
    if not roles:
        print("database roles: no *_WEB/_RELAY/_WORKER_DATABASE_URL set; every process uses "
              "its project's owner URL")


if __name__ == "__main__":
    main()
