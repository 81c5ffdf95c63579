"""Reads. Tombstones (deleted products) are never visible through the products API; the
versions list names them (id, version, deleted) and nothing else."""

from django.db import connection
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


def product_digests(*, start: int, end: int, parts: int) -> tuple[list[digest.Part], int]:
    """Count and digest of each non-empty subrange of ids [start, end), deleted products
    included; and the highest id held."""
    params = {"start": start, "end": end, "width": digest.width(start, end, parts)}
    with connection.cursor() as cur:
        cur.execute(digest.digests_sql(_rows_sql()), params)
        rows = cur.fetchall()
        cur.execute(f"SELECT coalesce(max(id), 0) FROM "
                    f"{connection.ops.quote_name(Product._meta.db_table)}")
        (max_id,) = cur.fetchone()
    return digest.parts_from_rows(rows, start=start, end=end, parts=parts), int(max_id)


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
