"""Reads. Tombstones (deleted products) are never visible through the products API; the
versions list names them (id, version, deleted) and nothing else."""

from contextlib import contextmanager

from django.db import connection, transaction
from django.db.models import QuerySet

from product_events import digest

from .models import Product


def product_list() -> QuerySet[Product]:
    return Product.objects.filter(deleted=False).order_by("id")


def product_versions_list() -> QuerySet[Product]:
    """Every product id the catalog has applied an event for, deleted ones included."""
    return Product.objects.order_by("id").only("id", "version", "deleted")


# --- anti-entropy: range digests (product_events.digest) ---------------------------------------

def _rows_sql() -> str:
    table = connection.ops.quote_name(Product._meta.db_table)
    h = digest.row_hash_sql(id="id", version="version", deleted="deleted", title="title",
                            image="image", price="price", description="description")
    return f"SELECT id, {h} AS h FROM {table} WHERE id >= %(start)s AND id < %(end)s"


def product_digests(*, start: int, end: int, parts: int,
                    max_rows: int = digest.MAX_DIGEST_ROWS) -> tuple[list[digest.Part], int, int]:
    """Count and digest of each non-empty subrange of ids [start, covered), deleted products
    included, with ``covered`` <= ``end`` the end of the first ``max_rows`` rows (``end`` when the
    range holds no more); and the highest id held. (product_events/digest.py)"""
    table = connection.ops.quote_name(Product._meta.db_table)
    with connection.cursor() as cur:
        covered = end
        if end > start:
            cur.execute(digest.cutoff_sql(f"SELECT id FROM {table} WHERE id >= %(start)s "
                                          f"AND id < %(end)s"),
                        {"start": start, "end": end, "max_rows": max_rows})
            row = cur.fetchone()
            covered = end if row is None else int(row[0])
        params = {"start": start, "end": covered, "width": digest.width(start, covered, parts)}
        cur.execute(digest.digests_sql(_rows_sql()), params)
        rows = cur.fetchall()
        cur.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
        (max_id,) = cur.fetchone()
    found = digest.parts_from_rows(rows, start=start, end=covered, parts=parts)
    return found, covered, int(max_id)


# At most CATALOG_DIGESTS_AT_ONCE digest computations at a time across every web process and host
# (transaction-scoped advisory locks of the catalog database: released by COMMIT, ROLLBACK or a
# lost connection), so anonymous digest requests never hold all the web workers.
DIGEST_LOCK_CLASS = 0x64696765  # "dige"


@contextmanager
def digest_slot(slots: int):
    """In a transaction: yields True holding one of ``slots`` digest slots, False if all are
    taken (the caller answers "busy")."""
    with transaction.atomic():
        got = False
        with connection.cursor() as cur:
            for slot in range(max(1, slots)):
                cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [DIGEST_LOCK_CLASS, slot])
                if cur.fetchone()[0]:
                    got = True
                    break
        yield got


def product_digest_rows(*, start: int, end: int) -> tuple[list[dict], int | None]:
    """The first ``digest.MAX_ROWS`` product ids in [start, end) with their version, deleted
    flag and row hash; and where the next page starts (None: no more)."""
    table = connection.ops.quote_name(Product._meta.db_table)
    h = digest.row_hash_sql(id="id", version="version", deleted="deleted", title="title",
                            image="image", price="price", description="description")
    with connection.cursor() as cur:
        cur.execute(f"SELECT id, version, deleted, {h} FROM {table} "
                    f"WHERE id >= %(start)s AND id < %(end)s ORDER BY id LIMIT %(limit)s",
                    {"start": start, "end": end, "limit": digest.MAX_ROWS + 1})
        rows = [{"id": i, "version": v, "deleted": d, "hash": str(x)}
                for i, v, d, x in cur.fetchall()]
    if len(rows) > digest.MAX_ROWS:
        return rows[:digest.MAX_ROWS], rows[digest.MAX_ROWS]["id"]
    return rows, None
