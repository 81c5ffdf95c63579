"""Anti-entropy: find where the catalog's copy drifted from the admin's products and repair it
through the normal path (outbox -> relay -> worker), without reading every product.

Both sides digest ranges of ids (``product_events.digest``: count and sum of row hashes over
id, version, deleted and content). The check asks the catalog for the digests of ``parts``
subranges of all ids, compares them with its own, and descends only into the subranges that
differ, until a range is small enough (``leaf`` ids) to compare row by row. A million products
with ten drifted cost two passes of the database over the primary key on each side and a few
thousand rows over HTTP.

Repairs: a product missing in the catalog, older there, or still live there though deleted here
is republished as it is here (``products_republish``); one at the same version with different
content gets its version raised (``services.product_version_raise``), since a subscriber ignores
an event that is not newer. Ids the catalog holds that this database never had, or newer than
here, are reported, not invented (docs/operations.md, "Restoring the admin database", says what
to do with those)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import requests
from django.db import connection

from product_events import digest

from . import services
from .models import Product, ProductTombstone
from .resync import products_republish

logger = logging.getLogger("admin_project.antientropy")


class CatalogUnavailable(Exception):
    """The catalog's digest endpoint could not be read (down, slow, or not this API)."""


@dataclass
class Check:
    compared: int = 0              # product ids (admin and catalog) covered by the check
    rows_read: int = 0             # rows compared one by one (both sides)
    requests: int = 0              # HTTP requests to the catalog
    seconds: float = 0.0
    missing: list[int] = field(default_factory=list)      # here, absent from the catalog
    behind: list[int] = field(default_factory=list)       # an older version there
    not_deleted: list[int] = field(default_factory=list)  # deleted here, live there
    content: list[int] = field(default_factory=list)      # same version, other content
    ahead: list[int] = field(default_factory=list)        # newer there than here
    unknown: list[int] = field(default_factory=list)      # there, never here
    repaired: int = 0

    @property
    def drifted(self) -> int:
        return sum(len(getattr(self, k)) for k in self.KINDS)

    KINDS = ("missing", "behind", "not_deleted", "content", "ahead", "unknown")

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {len(getattr(self, k))}" for k in self.KINDS if getattr(self, k))
        return (f"compared {self.compared} products, read {self.rows_read} rows in "
                f"{self.requests} requests, {self.drifted} drifted"
                + (f" ({kinds})" if kinds else "") + f", {self.repaired} repaired, "
                f"{self.seconds:.1f} s")


# --- this side's digests (products and tombstones) ---------------------------------------------

def _rows_sql() -> str:
    p = connection.ops.quote_name(Product._meta.db_table)
    t = connection.ops.quote_name(ProductTombstone._meta.db_table)
    live = digest.row_hash_sql(id="id", version="version", deleted="false", title="title",
                               image="image", price="price", description="description")
    dead = digest.row_hash_sql(id="product_id", version="version", deleted="true", title="''",
                               image="''", price="0", description="''")
    return (f"SELECT id, version, false AS deleted, {live} AS h FROM {p} "
            f"WHERE id >= %(start)s AND id < %(end)s UNION ALL "
            f"SELECT product_id, version, true, {dead} FROM {t} "
            f"WHERE product_id >= %(start)s AND product_id < %(end)s")


def _local_parts(start: int, end: int, parts: int) -> dict[int, digest.Part]:
    params = {"start": start, "end": end, "width": digest.width(start, end, parts)}
    with connection.cursor() as cur:
        cur.execute(digest.digests_sql(_rows_sql()), params)
        found = digest.parts_from_rows(cur.fetchall(), start=start, end=end, parts=parts)
    return {p.start: p for p in found}


def _local_rows(start: int, end: int) -> dict[int, tuple[int, bool, str]]:
    with connection.cursor() as cur:
        cur.execute(f"SELECT id, version, deleted, h::text FROM ({_rows_sql()}) AS r",
                    {"start": start, "end": end})
        return {i: (v, d, h) for i, v, d, h in cur.fetchall()}


def _local_max_id() -> int:
    p = connection.ops.quote_name(Product._meta.db_table)
    t = connection.ops.quote_name(ProductTombstone._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(f"SELECT greatest((SELECT max(id) FROM {p}), "
                    f"(SELECT max(product_id) FROM {t}))")
        (n,) = cur.fetchone()
    return int(n or 0)


# --- the catalog's --------------------------------------------------------------------------

class _Catalog:
    def __init__(self, url: str, timeout: float, check: Check):
        self.base = f"{url.rstrip('/')}/api/product-digests/"
        self.timeout = timeout
        self.check = check
        self.session = requests.Session()

    MAX_BODY = 16 * 1024 * 1024  # a digest page is a few KB; a rows page well under 1 MB

    def _get(self, path: str, **params):
        """One request, bounded in total (not only per read: a body trickled a byte at a time
        would pass a read timeout forever) and in size; anything but the expected JSON is
        CatalogUnavailable."""
        self.check.requests += 1
        deadline = time.monotonic() + self.timeout
        try:
            with self.session.get(self.base + path, params=params, stream=True,
                                  timeout=(min(5.0, self.timeout), self.timeout)) as resp:
                resp.raise_for_status()
                body = bytearray()
                for chunk in resp.iter_content(65536):
                    body += chunk
                    if len(body) > self.MAX_BODY or time.monotonic() > deadline:
                        raise CatalogUnavailable(f"{self.base}{path}: answer too large or "
                                                 f"slower than {self.timeout:g}s")
            return json.loads(body)
        except (requests.RequestException, ValueError) as exc:
            raise CatalogUnavailable(f"{self.base}{path}: {exc}") from exc

    def parts(self, start: int, end: int, parts: int) -> tuple[dict[int, digest.Part], int]:
        body = self._get("", start=start, end=end, parts=parts)
        try:
            found = {int(p["start"]): digest.Part(int(p["start"]), int(p["end"]),
                                                  int(p["count"]), str(p["digest"]))
                     for p in body["parts"]}
            return found, int(body["max_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogUnavailable(f"{self.base}: not a digest answer ({exc!r})") from exc

    def rows(self, start: int, end: int) -> dict[int, tuple[int, bool, str]]:
        out: dict[int, tuple[int, bool, str]] = {}
        lo = start
        while lo is not None:
            page = self._get("rows/", start=lo, end=end)
            try:
                out.update({int(r["id"]): (int(r["version"]), bool(r["deleted"]), str(r["hash"]))
                            for r in page["rows"]})
                nxt = page["next"]
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogUnavailable(f"{self.base}rows/: not a rows answer ({exc!r})") \
                    from exc
            if nxt is not None and (not isinstance(nxt, int) or not lo < nxt <= end):
                raise CatalogUnavailable(f"{self.base}rows/: next page {nxt!r} does not move "
                                         f"on from {lo}")
            lo = nxt
        return out

    def close(self):
        self.session.close()


# --- the check ------------------------------------------------------------------------------

def _compare_rows(check: Check, ours: dict, theirs: dict) -> None:
    check.rows_read += len(ours) + len(theirs)
    for pid in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(pid), theirs.get(pid)
        if mine == other:
            continue
        if mine is None:
            if not other[1]:  # a deleted id there that we never had: nothing visible
                check.unknown.append(pid)
            continue
        version, deleted, _ = mine
        if other is None:
            check.missing.append(pid)
        elif other[0] < version:
            (check.not_deleted if deleted and not other[1] else check.behind).append(pid)
        elif other[0] > version:
            check.ahead.append(pid)
        elif deleted != other[1]:
            (check.not_deleted if deleted else check.content).append(pid)
        else:
            check.content.append(pid)


def products_antientropy_check(*, catalog_url: str, repair: bool = True, parts: int = 64,
                               leaf: int = 512, timeout: float = 30.0) -> Check:
    """Compare every product id with the catalog by range digests; repair what drifted
    (``repair``). Raises CatalogUnavailable when the catalog cannot be read."""
    started = time.monotonic()
    check = Check()
    catalog = _Catalog(catalog_url, timeout, check)
    try:
        top_end = min(digest.MAX_END, max(_local_max_id(), 0) + 1)
        # the catalog's max id comes with its first answer: widen the range if it holds more
        theirs, their_max = catalog.parts(1, top_end, parts)
        if their_max >= top_end:
            top_end = min(digest.MAX_END, their_max + 1)
            theirs, _ = catalog.parts(1, top_end, parts)
        ours = _local_parts(1, top_end, parts)
        check.compared = max(sum(p.count for p in ours.values()),
                             sum(p.count for p in theirs.values()))
        pending = [(1, top_end, ours, theirs)]
        while pending:
            lo, hi, ours, theirs = pending.pop()
            w = digest.width(lo, hi, parts)
            for start in range(lo, hi, w):
                end = min(hi, start + w)
                a, b = ours.get(start), theirs.get(start)
                if a == b:
                    continue
                if end - start <= leaf:
                    _compare_rows(check, _local_rows(start, end), catalog.rows(start, end))
                else:
                    sub_theirs, _ = catalog.parts(start, end, parts)
                    pending.append((start, end, _local_parts(start, end, parts), sub_theirs))
    finally:
        catalog.close()
    for kind in Check.KINDS:
        getattr(check, kind).sort()
    if repair:
        check.repaired = antientropy_repair(check)
    check.seconds = time.monotonic() - started
    return check


def antientropy_repair(check: Check) -> int:
    """Republish (or raise the version of) what ``check`` found drifted; events queued."""
    republish = sorted(set(check.missing + check.behind + check.not_deleted))
    n = products_republish(product_ids=republish) if republish else 0
    for pid in check.content:
        try:
            product = Product.objects.get(pk=pid)
        except Product.DoesNotExist:  # a deleted one whose content differs: republish it
            n += products_republish(product_ids=[pid])
            continue
        services.product_version_raise(product_id=pid, version=product.version + 1)
        n += 1
    return n


# --- the periodic check (a thread of the relay process) ----------------------------------------

# one check at a time across every relay process and host (a PostgreSQL advisory lock)
LOCK_KEY = 0x70726F64  # "prod"


def _metrics():
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "checks": Counter("antientropy_checks", "Anti-entropy checks run, by outcome.",
                          ["outcome"]),
        "drifted": Gauge("antientropy_drifted_products",
                         "Products found drifted by the last check, by kind.", ["kind"]),
        "repaired": Counter("antientropy_repaired_products",
                            "Products republished or raised by anti-entropy checks."),
        "rows": Histogram("antientropy_rows_read", "Rows compared one by one per check.",
                          buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000)),
        "last": Gauge("antientropy_last_success_timestamp_seconds",
                      "When the last anti-entropy check completed (Unix time)."),
    }


_METRICS = None


def antientropy_check_locked(*, catalog_url: str) -> Check | None:
    """One check, if no other process holds the lock (then None)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        (got,) = cur.fetchone()
    if not got:
        return None
    try:
        return products_antientropy_check(catalog_url=catalog_url)
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def antientropy_forever(*, stop, every: float, catalog_url: str) -> None:
    """Check every ``every`` seconds until ``stop`` (a threading.Event) is set. Logs one line per
    check that found drift or failed, and one when the catalog is readable again."""
    from django.db import close_old_connections

    global _METRICS
    if _METRICS is None:
        _METRICS = _metrics()
    m = _METRICS
    failing = False
    while not stop.wait(every):
        close_old_connections()
        try:
            check = antientropy_check_locked(catalog_url=catalog_url)
        except CatalogUnavailable as exc:
            m["checks"].labels("catalog_unavailable").inc()
            if not failing:
                logger.warning("anti-entropy: catalog unreadable, will retry in %gs: %s",
                               every, exc)
            failing = True
            continue
        except Exception:
            m["checks"].labels("error").inc()
            logger.exception("anti-entropy check failed; will retry in %gs", every)
            failing = True
            continue
        finally:
            close_old_connections()
        if check is None:
            m["checks"].labels("skipped_locked").inc()
            continue
        if failing:
            logger.info("anti-entropy: checks work again")
        failing = False
        m["checks"].labels("ok").inc()
        m["last"].set_to_current_time()
        m["rows"].observe(check.rows_read)
        m["repaired"].inc(check.repaired)
        for kind in Check.KINDS:
            m["drifted"].labels(kind).set(len(getattr(check, kind)))
        (logger.warning if check.drifted else logger.debug)("anti-entropy: %s", check.summary())
        if check.ahead or check.unknown:
            logger.warning("anti-entropy: not repaired (the catalog knows more than this database: "
                           "see docs/operations.md, 'Anti-entropy'): ahead %s, unknown %s",
                           check.ahead[:20], check.unknown[:20])
