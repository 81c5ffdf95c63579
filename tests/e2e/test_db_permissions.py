"""The database permission matrix: every role `scripts/db_roles.py` creates, against every
operation (connect to each database; SELECT, INSERT, UPDATE, DELETE, TRUNCATE and DROP on every
table; CREATE TABLE, CREATE TEMP TABLE) on real PostgreSQL, on freshly migrated databases.
Allowed where the role needs it (written out below, by role, not derived from the script's
grants under test), refused otherwise. The whole e2e stack runs as these roles too
(tests/e2e/conftest.py), which proves the grants are enough."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid

import psycopg2
from psycopg2 import errors, sql

from harness import pg, processes

RW = {"select", "insert", "update", "delete"}
ADMIN_AUTH = ("auth_user", "auth_group", "auth_user_groups", "auth_group_permissions",
              "auth_user_user_permissions")

# role: (its database, {table: operations allowed}); everything else must be refused
EXPECTED: dict[str, tuple[str, dict[str, set[str]]]] = {
    "ADMIN_WEB": ("admin", {
        "products_product": RW, "products_producttombstone": RW, "products_outboxevent": RW,
        "products_resynccheckpoint": RW,  # resync and reconcile are run with this role
        **{t: RW for t in ADMIN_AUTH}, "authtoken_token": RW, "django_session": RW,
        "django_admin_log": RW, "django_content_type": {"select"}, "auth_permission": {"select"},
    }),
    "ADMIN_RELAY": ("admin", {"products_outboxevent": {"select", "insert", "update", "delete"},
                              "products_product": {"select", "update"},
                              "products_producttombstone": {"select"}}),
    "CATALOG_WEB": ("catalog", {"catalog_product": {"select"}, "audit_productchange": {"select"}}),
    "CATALOG_WORKER": ("catalog", {"catalog_product": {"select", "insert", "update"}}),
    "AUDIT_WORKER": ("catalog", {"audit_productchange": {"select", "insert", "update"}}),
}
TABLE_OPS = ("select", "insert", "update", "delete", "truncate", "drop")
DATABASE_OPS = ("create table", "create temp table")


def _statement(op: str, table: str, column: str) -> sql.Composable:
    t, c = sql.Identifier(table), sql.Identifier(column)
    return {
        "select": sql.SQL("SELECT 1 FROM {} LIMIT 1").format(t),
        "insert": sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t),
        "update": sql.SQL("UPDATE {} SET {} = DEFAULT WHERE false").format(t, c),
        "delete": sql.SQL("DELETE FROM {} WHERE false").format(t),
        "truncate": sql.SQL("TRUNCATE {}").format(t),
        "drop": sql.SQL("DROP TABLE {}").format(t),
        "create table": sql.SQL("CREATE TABLE public.matrix_probe (i int)"),
        "create temp table": sql.SQL("CREATE TEMP TABLE matrix_probe (i int)"),
    }[op]


def attempt(conn, statement) -> bool:
    """True if the server let the role run it (it may still fail after the privilege check, a
    NOT NULL column for an empty INSERT, say), False if refused. Always rolled back."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        return True
    except errors.InsufficientPrivilege:
        return False
    except psycopg2.Error:
        return True  # past the privilege check
    finally:
        conn.rollback()


def connects(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=10).close()
        return True
    except psycopg2.OperationalError as exc:
        assert "CONNECT privilege" in str(exc) or "permission denied" in str(exc), exc
        return False


def tables_of(url: str) -> dict[str, str]:
    """{table: one column} of every table in the database, read as its owner."""
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name, min(column_name) FROM information_schema.columns "
                    "WHERE table_schema = 'public' GROUP BY table_name")
        return dict(cur.fetchall())


def test_every_database_role_may_do_exactly_what_its_process_needs():
    suffix = uuid.uuid4().hex[:8]
    dbs = {"admin": f"dbperm_admin_{suffix}", "catalog": f"dbperm_catalog_{suffix}"}
    owner = {k: pg.database_url(v) for k, v in dbs.items()}
    roles = {key: f"dbperm_{key.lower()}_{suffix}" for key in EXPECTED}
    urls = {key: {k: pg.database_url(name, user=roles[key], password=uuid.uuid4().hex)
                  for k, name in dbs.items()} for key in EXPECTED}
    values = {"ADMIN_DATABASE_URL": owner["admin"], "CATALOG_DATABASE_URL": owner["catalog"]}
    values |= {f"{key}_DATABASE_URL": urls[key][db] for key, (db, _) in EXPECTED.items()}
    env = processes.base_env(**values)
    try:
        for name in dbs.values():
            pg.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for project in ("admin_project", "catalog_project"):
            migrated = subprocess.run([sys.executable, f"{project}/manage.py", "migrate",
                                       "--no-input", "-v", "0"], cwd=processes.REPO, env=env,
                                      capture_output=True, text=True, timeout=300)
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for _ in range(2):  # idempotent: the second run changes nothing
            made = subprocess.run([sys.executable, "scripts/db_roles.py"], cwd=processes.REPO,
                                  env=env, capture_output=True, text=True, timeout=120)
            assert made.returncode == 0, made.stdout + made.stderr
        tables = {db: tables_of(url) for db, url in owner.items()}
        assert set(tables["admin"]) >= {t for t in EXPECTED["ADMIN_WEB"][1]}
        assert set(tables["catalog"]) >= {"catalog_product", "audit_productchange"}

        wrong, checked = [], 0
        for key, (own_db, grants) in EXPECTED.items():
            for db in dbs:
                got = connects(urls[key][db])
                checked += 1
                if got != (db == own_db):
                    wrong.append(f"{key} connect {db}: {'allowed' if got else 'refused'}")
                if not got:
                    continue
                with contextlib.closing(psycopg2.connect(urls[key][db])) as conn:
                    for op in DATABASE_OPS:
                        checked += 1
                        if attempt(conn, _statement(op, "", "")):
                            wrong.append(f"{key} {op} in {db}: allowed")
                    for table, column in sorted(tables[db].items()):
                        for op in TABLE_OPS:
                            got = attempt(conn, _statement(op, table, column))
                            checked += 1
                            if got != (op in grants.get(table, set())):
                                wrong.append(f"{key} {op} {db}.{table}: "
                                             f"{'allowed' if got else 'refused'}")
        assert not wrong, "\n".join(wrong)
        assert checked > 200, checked
    finally:
        for name in dbs.values():
            pg.database_drop(name)
        for role in roles.values():
            pg.role_drop(role)
