"""Range digests: how the admin and a subscriber compare their copies of the products without
reading them (anti-entropy, as in Cassandra's repair or a Merkle tree, flattened into ranges).

Every product id a side knows has a row hash over (id, version, deleted, content): content is the
title, image, price and description of a live product (a deleted one hashes as deleted, whatever
its last state). The digest of a range of ids is the number of rows in it and the sum of their
hashes, so ranges split and merge freely and the database computes them in one pass over the
primary key. Both sides build the SQL from this one module, so a hash means the same on both.

The wire format of the catalog's ``GET /api/product-digests/?start=&end=&parts=&max_rows=``
(docs/operations.md, "Anti-entropy"):
``{"start": lo, "end": hi, "max_id": n, "parts": [{"start", "end", "count", "digest"}, ...]}``
with one part per non-empty subrange. No request digests more than ``max_rows`` rows (at most
``MAX_DIGEST_ROWS``), whatever its range: when [start, end) holds more, the answer covers only
[start, hi) with hi the id of the first row left out (``end`` of the answer is then smaller than
asked), split into ``parts`` subranges of [start, hi); the caller goes on from hi. So no
statement ever reads the whole table, and the cost of a request is bounded by rows, not by ids.
``.../rows/`` lists ``{"id", "version", "deleted", "hash"}``, ``MAX_ROWS`` a page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_PARTS = 256          # subranges one digest request may ask for
MAX_ROWS = 1000          # rows one page of ``.../rows/`` lists
# rows one digest request may cover (each side's own bound too): about a second of this
# loaded machine's PostgreSQL, far below the 30 s statement timeout (1,000,000 rows took 9-14 s)
MAX_DIGEST_ROWS = 100_000
MAX_ID = 2**63 - 1       # the largest product id (bigint)
MAX_END = MAX_ID + 1     # ranges are [start, end): the last id is covered


def row_hash_sql(*, id: str, version: str, deleted: str, title: str, image: str, price: str,
                 description: str) -> str:
    """A SQL expression (bigint, 60 bits) for one row, from the given column expressions."""
    # each field hashed on its own: no separator a field could contain makes two contents equal
    content = (f"md5(md5({title}) || md5({image}) || md5(({price})::text)"
               f" || md5({description}))")
    key = (f"{id}::text || ':' || {version}::text || ':' || "
           f"CASE WHEN {deleted} THEN 'deleted' ELSE {content} END")
    return f"('x' || substr(md5({key}), 1, 15))::bit(60)::bigint"


def row_hash(*, id: int, version: int, deleted: bool, title: str = "", image: str = "",
             price: str = "0", description: str = "") -> int:
    """``row_hash_sql`` in Python (a test double of a subscriber computes it; a test checks the
    two agree). ``price`` as PostgreSQL prints it (``numeric(10,2)``: "3.00")."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - not for security

    content = md5(md5(title) + md5(image) + md5(price) + md5(description))
    key = f"{id}:{version}:" + ("deleted" if deleted else content)
    return int(md5(key)[:15], 16)


def cutoff_sql(ids_sql: str) -> str:
    """The id of the first row past ``%(max_rows)s`` rows of ``ids_sql`` (a query of ``id``
    over [%(start)s, %(end)s), or several UNION ALL'ed), None if it holds no more: the end of
    the range one digest request covers. An index scan of ``max_rows`` entries."""
    return f"SELECT id FROM ({ids_sql}) AS r ORDER BY id OFFSET %(max_rows)s LIMIT 1"


def width(start: int, end: int, parts: int) -> int:
    """The id width of each of ``parts`` subranges of [start, end) (the last may be shorter)."""
    return max(1, -(-(end - start) // parts))


def digests_sql(rows_sql: str) -> str:
    """Per-subrange count and digest over ``rows_sql`` (a query with columns ``id`` and ``h``,
    already restricted to [%(start)s, %(end)s)); parameter ``%(width)s``."""
    return (f"SELECT (id - %(start)s) / %(width)s AS part, count(*), sum(h)::text "
            f"FROM ({rows_sql}) AS r GROUP BY part ORDER BY part")


@dataclass(frozen=True)
class Part:
    start: int
    end: int
    count: int
    digest: str

    def as_json(self) -> dict:
        return {"start": self.start, "end": self.end, "count": self.count, "digest": self.digest}


def parts_from_rows(rows, *, start: int, end: int, parts: int) -> list[Part]:
    """Parts (non-empty subranges only) from ``digests_sql`` result rows."""
    w = width(start, end, parts)
    out = []
    for part, count, digest in rows:
        lo = start + int(part) * w
        out.append(Part(lo, min(end, lo + w), int(count), str(digest)))
    return out
