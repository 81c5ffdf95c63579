"""Anti-entropy: find where the catalog's copy drifted from the admin's products and repair it
through the normal path (outbox -> relay -> worker), without reading every product.

Both sides digest ranges of ids (``product_events.digest``: count and sum of row hashes over
id, version, deleted and content). The check walks the ids in windows of at most ``max_rows``
rows on each side (no statement ever reads the whole table: the catalog answers for the first
``max_rows`` rows of what was asked and says where it stopped), asks the catalog for the digests
of ``parts`` subranges of each window, compares them with its own and, for each subrange that
differs, reads its rows one by one when it holds at most ``digest.MAX_ROWS`` rows (adjacent ones
in one request), needs no request at all when the catalog holds none of it, and descends
otherwise. A million products with ten drifted cost one pass of each database over the primary
key and a few dozen requests.

The check is bounded and makes progress whatever the catalog does: it honours 429/503 and their
Retry-After within its time budget (``max_seconds``), asks for fewer rows when a digest is too
costly for either database (the statement timeout), repairs what it found as it goes, and when
the budget runs out it stops and says where (``stopped_at``: the relay's next check goes on from
there).

Repairs: a product missing in the catalog, older there, or still live there though deleted here
is republished as it is here (``products_republish``); one at the same version with different
content gets its version raised (``services.product_version_raise``), since a subscriber ignores
an event that is not newer. A change still pending in the outbox, or sent less than ``grace``
seconds ago, is **in flight**, not drift: reported on its own, not repaired (a stopped worker or a
backlog is not a loss). Repairs are written ``REPAIR_BATCH`` per transaction, at most
``max_repairs`` per check, and none while the outbox holds more than ``max_pending`` pending
events. Ids the catalog holds that this database never had, or newer than here, are reported,
not invented (docs/operations.md, "Restoring the admin database", says what to do with those)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg2.errors import QueryCanceled

from admin_project.outbox.models import TABLE as OUTBOX_TABLE
from admin_project.outbox.selectors import outbox_pending_count
from product_events import digest

from . import services
from .models import Product, ProductTombstone
from .resync import products_republish

logger = logging.getLogger("admin_project.antientropy")

REPAIR_BATCH = 500          # repair events per transaction
MIN_ROWS = 1_000            # a window is never asked smaller than this many rows
MAX_RETRY_AFTER = 60.0      # a longer Retry-After is waited this long (then asked again)


class CatalogUnavailable(Exception):
    """The catalog's digest endpoint could not be read (down, slow, or not this API).
    ``check``: what the check compared, found and repaired before (when it had begun)."""

    check: Check | None = None


class _OutOfTime(Exception):
    """The check's time budget is spent (or a Retry-After would overrun it)."""


class _TooCostly(Exception):
    """The catalog could not digest the range within its statement timeout."""


@dataclass
class Check:
    compared: int = 0              # product ids (admin and catalog) covered by the check
    rows_read: int = 0             # rows compared one by one (both sides)
    requests: int = 0              # HTTP requests to the catalog (retries included)
    waited: float = 0.0            # seconds waited on 429/503 Retry-After
    smaller: int = 0               # times a window was asked again with fewer rows
    seconds: float = 0.0
    missing: list[int] = field(default_factory=list)      # here, absent from the catalog
    behind: list[int] = field(default_factory=list)       # an older version there
    not_deleted: list[int] = field(default_factory=list)  # deleted here, live there
    content: list[int] = field(default_factory=list)      # same version, other content
    ahead: list[int] = field(default_factory=list)        # newer there than here
    unknown: list[int] = field(default_factory=list)      # there, never here
    in_flight: list[int] = field(default_factory=list)    # pending or recently sent: not drift
    # drifted, but their event was sent twice already (the change and a repair or a resync)
    # and is still not there: most likely parked (`dlq list`); not republished again by the
    # relay's checks (a parked event would be parked again at every check)
    not_landing: list[int] = field(default_factory=list)
    repaired: int = 0              # repair events queued
    deferred: int = 0              # drifted, repairable, left for a later check (its bounds)
    complete: bool = True          # every id compared
    stopped_at: int | None = None  # an incomplete check stopped here (the next goes on from it)
    start_at: int = 1              # where it began (then on to the highest id, then 1 ...)
    reached_end: bool = False      # compared up to the highest id
    began_at_one: float | None = None   # wall time it began comparing from id 1
    counts_at_wrap: dict[str, int] | None = None  # kinds found before it began again at id 1

    KINDS = ("missing", "behind", "not_deleted", "content", "ahead", "unknown")

    @property
    def drifted(self) -> int:
        return sum(len(getattr(self, k)) for k in self.KINDS)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in self.KINDS}

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {len(getattr(self, k))}" for k in self.KINDS if getattr(self, k))
        extra = ""
        if self.waited:
            extra += f", waited {self.waited:.0f} s for the catalog's Retry-After"
        if self.smaller:
            extra += f", asked {self.smaller} times for fewer rows (statement timeout)"
        return (f"compared {self.compared} products, read {self.rows_read} rows in "
                f"{self.requests} requests, {self.drifted} drifted"
                + (f" ({kinds})" if kinds else "")
                + (f", {len(self.in_flight)} in flight (not repaired)" if self.in_flight else "")
                + (f", {len(self.not_landing)} not republished again (sent twice already and "
                   "still not there: parked? `dlq list`)" if self.not_landing else "")
                + f", {self.repaired} repaired"
                + (f", {self.deferred} left for the next check" if self.deferred else "")
                + f", {self.seconds:.1f} s" + extra
                + ("" if self.complete else
                   f"; incomplete: stopped at id {self.stopped_at} (time budget spent)"))


# --- this side's digests (products and tombstones) ---------------------------------------------

def _tables() -> tuple[str, str]:
    return (connection.ops.quote_name(Product._meta.db_table),
            connection.ops.quote_name(ProductTombstone._meta.db_table))


def _rows_sql() -> str:
    p, t = _tables()
    live = digest.row_hash_sql(id="id", version="version", deleted="false", title="title",
                               image="image", price="price", description="description")
    dead = digest.row_hash_sql(id="product_id", version="version", deleted="true", title="''",
                               image="''", price="0", description="''")
    return (f"SELECT id, version, false AS deleted, {live} AS h FROM {p} "
            f"WHERE id >= %(start)s AND id < %(end)s UNION ALL "
            f"SELECT product_id, version, true, {dead} FROM {t} "
            f"WHERE product_id >= %(start)s AND product_id < %(end)s")


def _too_costly(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and isinstance(exc.__cause__, QueryCanceled)


def _local_cutoff(start: int, end: int, max_rows: int) -> int:
    """The end of the first ``max_rows`` ids (live and deleted) in [start, end)."""
    p, t = _tables()
    ids = (f"(SELECT id FROM {p} WHERE id >= %(start)s AND id < %(end)s ORDER BY id "
           f"LIMIT %(max_rows)s + 1) UNION ALL (SELECT product_id FROM {t} WHERE product_id >= "
           f"%(start)s AND product_id < %(end)s ORDER BY product_id LIMIT %(max_rows)s + 1)")
    with connection.cursor() as cur:
        cur.execute(digest.cutoff_sql(ids), {"start": start, "end": end, "max_rows": max_rows})
        row = cur.fetchone()
    return end if row is None else int(row[0])


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
    p, t = _tables()
    with connection.cursor() as cur:
        cur.execute(f"SELECT greatest((SELECT max(id) FROM {p}), "
                    f"(SELECT max(product_id) FROM {t}))")
        (n,) = cur.fetchone()
    return int(n or 0)


def _outbox_ids(wanted: dict[int, int], match: str, rest: str, *params) -> set[int]:
    """Of ``wanted`` (id -> the version this side holds), the ids with outbox rows whose
    version ``match``es (``o.version`` against ``w.version``) and that ``rest`` selects."""
    if not wanted:
        return set()
    ids = list(wanted)
    with connection.cursor() as cur:
        cur.execute(f"SELECT o.product_id FROM {OUTBOX_TABLE} o "
                    f"JOIN unnest(%s::bigint[], %s::bigint[]) AS w(id, version) "
                    f"ON o.product_id = w.id AND o.version {match} w.version {rest}",
                    [ids, [wanted[i] for i in ids], *params])
        return {int(r[0]) for r in cur.fetchall()}


def _in_flight(wanted: dict[int, int], grace: float) -> set[int]:
    """The ids with an outbox event at the version held here or later that is pending (or set
    aside: sending it again would not help) or was sent less than ``grace`` seconds ago."""
    return _outbox_ids(wanted, ">=", "WHERE o.sent_at IS NULL OR o.sent_at > "
                                     "clock_timestamp() - %s * interval '1 second'", grace)


def _sent_twice(wanted: dict[int, int]) -> set[int]:
    """The ids whose event at the version held here was sent at least twice (the change, then a
    repair or a resync: the outbox keeps sent rows for ADMIN_OUTBOX_RETENTION_HOURS)."""
    return _outbox_ids(wanted, "=", "WHERE o.sent_at IS NOT NULL "
                                    "GROUP BY o.product_id HAVING count(*) >= 2")


# --- the catalog's --------------------------------------------------------------------------

# what reading a JSON answer of the wrong shape raises (a list for an object, a string for a
# number, a huge or fractional number, ...): the catalog is unreadable, never a crash
ANSWER_ERRORS = (KeyError, IndexError, TypeError, ValueError, OverflowError, AttributeError)
UNAVAILABLE_TRIES = 3  # 503s in a row before the catalog counts as unreadable


def _no_constant(name: str):
    raise ValueError(f"not JSON: {name}")  # NaN, Infinity: Python's json accepts them


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:  # an HTTP date, or nonsense
        seconds = 1.0
    return min(MAX_RETRY_AFTER, max(0.5, seconds))


class _Catalog:
    def __init__(self, url: str, timeout: float, check: Check, wait: Callable[[float], None]):
        self.base = f"{url.rstrip('/')}/api/product-digests/"
        self.timeout = timeout
        self.check = check
        self.wait = wait  # sleeps that long, or raises _OutOfTime
        self.session = requests.Session()

    MAX_BODY = 16 * 1024 * 1024  # a digest page is a few KB; a rows page well under 1 MB

    def _get(self, path: str, **params):
        """One answer, bounded in total per attempt (not only per read: a body trickled a byte
        at a time would pass a read timeout forever) and in size. 429 and 503 (throttled, busy)
        are asked again after their Retry-After, within the check's budget; a range too costly
        for the catalog's statement timeout is _TooCostly; anything else but the expected JSON
        is CatalogUnavailable."""
        unavailable = 0
        while True:
            self.check.requests += 1
            deadline = time.monotonic() + self.timeout
            try:
                with self.session.get(self.base + path, params=params, stream=True,
                                      timeout=(min(5.0, self.timeout), self.timeout)) as resp:
                    body = bytearray()
                    for chunk in resp.iter_content(65536):
                        body += chunk
                        if len(body) > self.MAX_BODY or time.monotonic() > deadline:
                            raise CatalogUnavailable(f"{self.base}{path}: answer too large or "
                                                     f"slower than {self.timeout:g}s")
                    status, retry_after = resp.status_code, resp.headers.get("Retry-After")
                    if status not in (429, 503) and not (
                            status == 400 and b"range_too_costly" in body):
                        resp.raise_for_status()
                        return json.loads(body, parse_constant=_no_constant)
            except (requests.RequestException, ValueError, RecursionError) as exc:
                raise CatalogUnavailable(f"{self.base}{path}: {exc}") from exc
            if status == 400:
                raise _TooCostly()
            if status == 503:
                # the catalog answers 503 when its database is unavailable (its busy answer is
                # 429): asked again a few times (a proxy's passing 503), then unreadable
                unavailable += 1
                if unavailable >= UNAVAILABLE_TRIES:
                    raise CatalogUnavailable(
                        f"{self.base}{path}: 503 {UNAVAILABLE_TRIES} times in a row "
                        f"({bytes(body[:200]).decode('utf-8', 'replace')!r})")
            self.wait(_retry_after(retry_after))  # throttled (429) or unavailable: ask again

    def parts(self, start: int, end: int, parts: int,
              max_rows: int) -> tuple[int, dict[int, digest.Part], int]:
        """(where the answer stops, its parts by start, the catalog's highest id)."""
        body = self._get("", start=start, end=end, parts=parts, max_rows=max_rows)
        try:
            covered = int(body["end"])
            found = {int(p["start"]): digest.Part(int(p["start"]), int(p["end"]),
                                                  int(p["count"]), str(p["digest"]))
                     for p in body["parts"]}
            max_id = int(body["max_id"])
        except ANSWER_ERRORS as exc:
            raise CatalogUnavailable(f"{self.base}: not a digest answer ({exc!r})") from exc
        if not start < covered <= end:
            raise CatalogUnavailable(f"{self.base}: the answer for [{start}, {end}) stops at "
                                     f"{covered}: it does not move on")
        return covered, found, max_id

    def rows(self, start: int, end: int) -> dict[int, tuple[int, bool, str]]:
        out: dict[int, tuple[int, bool, str]] = {}
        lo = start
        while lo is not None:
            try:
                page = self._get("rows/", start=lo, end=end)
            except _TooCostly:  # a page is a few thousand rows at most: the database is ill
                raise CatalogUnavailable(f"{self.base}rows/: statement timeout") from None
            try:
                out.update({int(r["id"]): (int(r["version"]), bool(r["deleted"]), str(r["hash"]))
                            for r in page["rows"]})
                nxt = page["next"]
            except ANSWER_ERRORS as exc:
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

def _compare_rows(ours: dict, theirs: dict) -> list[tuple[str, int, int | None]]:
    """(kind, id, this side's version) of each id that differs."""
    out = []
    for pid in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(pid), theirs.get(pid)
        if mine == other:
            continue
        if mine is None:
            if not other[1]:  # a deleted id there that we never had: nothing visible
                out.append(("unknown", pid, None))
            continue
        version, deleted, _ = mine
        if other is None:
            kind = "missing"
        elif other[0] < version:
            kind = "not_deleted" if deleted and not other[1] else "behind"
        elif other[0] > version:
            kind = "ahead"
        elif deleted != other[1]:
            kind = "not_deleted" if deleted else "content"
        else:
            kind = "content"
        out.append((kind, pid, version))
    return out


class _Run:
    """One check: the walk over the ids, what it found, the repairs as it goes."""

    REPUBLISH = ("missing", "behind", "not_deleted")

    def __init__(self, *, check: Check, catalog_url: str, timeout: float, parts: int,
                 max_rows: int, deadline: float, sleep: Callable[[float], object], repair: bool,
                 grace: float, max_repairs: int, max_pending: int, again: bool):
        self.check = check
        self.again = again  # republish events sent twice already (the commands: a person asked)
        self.catalog = _Catalog(catalog_url, timeout, check, self._wait)
        self.parts, self.max_rows, self.deadline, self.sleep = parts, max_rows, deadline, sleep
        self.repair, self.grace = repair, grace
        self.max_repairs, self.max_pending = max_repairs, max_pending
        self.republish: list[int] = []
        self.raise_: list[tuple[int, int]] = []   # (id, the version compared)
        self.hi = 1        # the end of all ids (grows when the catalog holds higher ones)
        self.position = 1  # every id from where this check began up to here is compared
        self.pool: ThreadPoolExecutor | None = None  # this side's digests, beside the catalog's

    # --- time ---
    def _wait(self, seconds: float) -> None:
        if time.monotonic() + seconds > self.deadline:
            raise _OutOfTime()
        self.sleep(seconds)
        self.check.waited += seconds

    def _in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfTime()

    def _fewer_rows(self, side: str) -> None:
        if self.max_rows <= MIN_ROWS:
            raise CatalogUnavailable(f"{side}: even {self.max_rows} rows cannot be digested "
                                     "within the statement timeout")
        self.max_rows = max(MIN_ROWS, self.max_rows // 2)
        self.check.smaller += 1
        logger.info("anti-entropy: a digest hit the %s's statement timeout; asking for %d rows "
                    "at a time from now on", side, self.max_rows)

    # --- the walk ---
    def compare(self, lo: int, hi: int, top: bool = False, grow: bool = False) -> None:
        """Compare [lo, hi) completely. ``top``: the walk over all ids (``self.position``
        follows it, repairs are written after each window); ``grow``: up to ``self.hi``, which
        grows when the catalog holds higher ids."""
        while lo < (self.hi if grow else hi):
            self._in_time()
            end = self.hi if grow else hi
            try:
                a_end = _local_cutoff(lo, end, self.max_rows)
                # this side's digest of the window while the catalog computes its own (a race
                # here costs a descent at most: rows are read catalog first, then here)
                mine = self._local_parts_soon(lo, a_end)
                try:
                    covered, theirs, their_max = self.catalog.parts(lo, a_end, self.parts,
                                                                    self.max_rows)
                finally:
                    ours = mine()
                if covered != a_end:  # the catalog held more rows here: it stopped earlier
                    ours = _local_parts(lo, covered, self.parts)
            except _TooCostly:
                self._fewer_rows("catalog")
                continue
            except OperationalError as exc:
                if not _too_costly(exc):
                    raise
                self._fewer_rows("admin database")
                continue
            if grow:
                self.hi = max(self.hi, min(digest.MAX_END, their_max + 1))
            if top:
                self.check.compared += max(sum(p.count for p in ours.values()),
                                           sum(p.count for p in theirs.values()))
            self._window(lo, covered, ours, theirs)
            lo = covered
            if top:
                self.position = lo
                self.flush(final=True)

    def _window(self, lo: int, end: int, ours: dict, theirs: dict) -> None:
        w = digest.width(lo, end, self.parts)
        starts = range(lo, end, w)
        fetch: list[tuple[int, int]] = []  # subranges to read row by row, in id order
        for start in starts:
            a, b = ours.get(start), theirs.get(start)
            if a == b:
                continue
            stop = min(end, start + w)
            if b is None:  # none of it there: every id here is missing, no request needed
                ours_here = _local_rows(start, stop)
                self.check.rows_read += len(ours_here)
                self._found(_compare_rows(ours_here, {}))
            elif max(a.count if a else 0, b.count) <= digest.MAX_ROWS:
                fetch.append((start, stop))
            else:
                self.compare(start, stop)
        # adjacent (or close) subranges in one rows request while it stays one page there
        span: tuple[int, int] | None = None
        for start, stop in fetch:
            if span is not None and sum(p.count for s, p in theirs.items()
                                        if span[0] <= s < stop) <= digest.MAX_ROWS:
                span = (span[0], stop)
                continue
            if span is not None:
                self._rows(*span)
            span = (start, stop)
        if span is not None:
            self._rows(*span)

    def _rows(self, start: int, end: int) -> None:
        theirs = self.catalog.rows(start, end)  # first: the catalog can only lag behind here
        ours = _local_rows(start, end)
        self.check.rows_read += len(ours) + len(theirs)
        self._found(_compare_rows(ours, theirs))

    # --- findings and repairs ---
    def _found(self, found: list[tuple[str, int, int | None]]) -> None:
        wanted = {pid: v for kind, pid, v in found if kind in self.REPUBLISH}
        flying = _in_flight(wanted, self.grace)
        stuck = (set() if self.again or not self.repair else
                 _sent_twice({pid: v for pid, v in wanted.items() if pid not in flying}))
        for kind, pid, version in found:
            if pid in flying:
                self.check.in_flight.append(pid)
                continue
            getattr(self.check, kind).append(pid)
            if not self.repair:
                continue
            if pid in stuck:
                self.check.not_landing.append(pid)
            elif kind in self.REPUBLISH:
                self.republish.append(pid)
            elif kind == "content":
                self.raise_.append((pid, version))
        self.flush()

    def flush(self, final: bool = False) -> None:
        """Write the queued repairs, ``REPAIR_BATCH`` a transaction (only full batches unless
        ``final``), within the check's bounds; what is beyond them is left for a later check."""
        while self.republish or self.raise_:
            if not final and len(self.republish) + len(self.raise_) < REPAIR_BATCH:
                return
            room = self.max_repairs - self.check.repaired
            pending = outbox_pending_count() if self.max_pending else 0
            if room <= 0 or (self.max_pending and pending >= self.max_pending):
                self.check.deferred += len(self.republish) + len(self.raise_)
                self.republish, self.raise_ = [], []
                return
            size = min(REPAIR_BATCH, room,
                       (self.max_pending - pending) if self.max_pending else REPAIR_BATCH)
            if self.republish:
                batch, self.republish = self.republish[:size], self.republish[size:]
                self.check.repaired += products_republish(product_ids=batch)
            else:
                batch, self.raise_ = self.raise_[:size], self.raise_[size:]
                self.check.repaired += _raise_versions(batch)

    def _local_parts_soon(self, start: int, end: int) -> Callable[[], dict]:
        """``_local_parts`` of [start, end) on a connection of its own, computed meanwhile;
        call the result for the answer (its exception, if any). In this connection when that
        is inside a transaction: another one would not see its uncommitted rows (tests)."""
        if connection.in_atomic_block:
            return lambda: _local_parts(start, end, self.parts)
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="antientropy")
        future = self.pool.submit(_local_parts, start, end, self.parts)
        return future.result

    def close(self) -> None:
        self.catalog.close()
        if self.pool is not None:  # its thread's database connection goes with it
            self.pool.submit(_connection_close).result()
            self.pool.shutdown()


def _connection_close() -> None:
    connection.close()  # the calling thread's own (django.db.connection is per thread)


def _raise_versions(items: list[tuple[int, int]]) -> int:
    """Content drift: raise each product's version by one (one transaction), if it is still at
    the version compared (if not, a newer event is on its way already)."""
    n = 0
    with transaction.atomic():
        for pid, version in items:
            product = Product.objects.select_for_update().filter(pk=pid).first()
            if product is None:  # deleted meanwhile: its deletion is on its way
                continue
            if product.version == version:
                services.product_version_raise(product_id=pid, version=version + 1)
                n += 1
    return n


def products_antientropy_check(*, catalog_url: str, repair: bool = True,
                               parts: int = digest.MAX_PARTS,
                               max_rows: int = digest.MAX_DIGEST_ROWS, timeout: float = 30.0,
                               max_seconds: float | None = None, grace: float | None = None,
                               max_repairs: int | None = None, max_pending: int | None = None,
                               start_at: int = 1, again: bool = True,
                               sleep: Callable[[float], object] = time.sleep) -> Check:
    """Compare every product id with the catalog by range digests, from ``start_at`` to the
    highest id and then from 1 up to ``start_at``; repair what drifted as it is found
    (``repair``). Stops after ``max_seconds`` (``complete`` False, ``stopped_at`` where).
    Raises CatalogUnavailable (with ``.check``, its repairs done) when the catalog cannot be
    read. ``again`` False (the relay's periodic checks): an event sent twice already that is
    still not there is reported (``not_landing``), not republished once more. Defaults: the
    ``ANTIENTROPY_*`` settings."""
    started = time.monotonic()
    max_seconds = settings.ANTIENTROPY_MAX_SECONDS if max_seconds is None else max_seconds
    check = Check()
    run = _Run(check=check, catalog_url=catalog_url, timeout=timeout, parts=parts,
               max_rows=max_rows, deadline=started + max_seconds, sleep=sleep, repair=repair,
               grace=settings.ANTIENTROPY_GRACE_SECONDS if grace is None else grace,
               max_repairs=(settings.ANTIENTROPY_MAX_REPAIRS if max_repairs is None
                            else max_repairs),
               max_pending=(settings.ANTIENTROPY_MAX_PENDING if max_pending is None
                            else max_pending), again=again)
    top = _local_max_id() + 1
    start_at = start_at if 1 < start_at < top else 1
    check.start_at = run.position = start_at
    run.hi = max(top, start_at + 1)  # one request at least: the catalog may hold higher ids
    try:
        if start_at == 1:
            check.began_at_one = time.time()
        run.compare(start_at, run.hi, top=True, grow=True)
        check.reached_end = True
        if start_at > 1:
            check.counts_at_wrap = check.counts()
            check.began_at_one = time.time()
            run.position = 1
            run.compare(1, start_at, top=True)
    except _OutOfTime:
        check.complete, check.stopped_at = False, run.position
    except CatalogUnavailable as exc:
        check.complete, check.stopped_at = False, run.position
        run.flush(final=True)
        exc.check = check
        check.seconds = time.monotonic() - started
        raise
    finally:
        run.close()
    run.flush(final=True)
    for kind in (*Check.KINDS, "in_flight", "not_landing"):
        getattr(check, kind).sort()
    check.seconds = time.monotonic() - started
    return check


# --- one check at a time (the relays', and the commands') ----------------------------------------

# one check at a time across every relay process, host and command (a PostgreSQL advisory lock)
LOCK_KEY = 0x70726F64  # "prod"


def antientropy_check_locked(*, catalog_url: str, wait: float = 0.0,
                             sleep: Callable[[float], object] = time.sleep,
                             **kwargs) -> Check | None:
    """One check, if no other process holds the lock or it is released within ``wait``
    seconds (otherwise None)."""
    give_up = time.monotonic() + wait
    while True:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            (got,) = cur.fetchone()
        if got:
            break
        if time.monotonic() >= give_up:
            return None
        sleep(min(1.0, max(0.0, give_up - time.monotonic())))
    try:
        return products_antientropy_check(catalog_url=catalog_url, sleep=sleep, **kwargs)
    finally:
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        except Exception:  # the connection is gone, and the lock with it
            logger.debug("anti-entropy: unlock failed", exc_info=True)


# --- the periodic check (a thread of the relay process) ----------------------------------------

def _metrics():
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "enabled": Gauge("antientropy_enabled",
                         "1 if this relay runs the periodic anti-entropy check, 0 if it is off "
                         "(ADMIN_RECONCILE_EVERY_SECONDS=0)."),
        "interval": Gauge("antientropy_interval_seconds",
                          "Seconds between the starts of two checks (0: off)."),
        "checks": Counter("antientropy_checks", "Anti-entropy checks run, by outcome.",
                          ["outcome"]),
        "drifted": Gauge("antientropy_drifted_products",
                         "Products found drifted, by kind: in the last complete pass over all "
                         "ids, or in the current one if more.", ["kind"]),
        "in_flight": Gauge("antientropy_in_flight_products",
                           "Products the last check found different but in flight (pending in "
                           "the outbox or sent within the grace): not drift, not repaired."),
        "repaired": Counter("antientropy_repaired_products",
                            "Products republished or raised by anti-entropy checks."),
        "not_landing": Gauge("antientropy_not_landing_products",
                             "Drifted products the last check did not republish again: their "
                             "event was sent twice already and is still not in the catalog "
                             "(most likely parked: `dlq list`)."),
        "deferred": Gauge("antientropy_deferred_products",
                          "Drifted products the last check left for the next one (its repair "
                          "bounds)."),
        "rows": Histogram("antientropy_rows_read", "Rows compared one by one per check.",
                          buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000)),
        "duration": Gauge("antientropy_last_duration_seconds",
                          "How long the last check ran (seconds)."),
        "last": Gauge("antientropy_last_success_timestamp_seconds",
                      "When the last anti-entropy check ended without failing (Unix time; 0: none "
                      "since this relay started)."),
        "full_pass": Gauge("antientropy_last_full_pass_timestamp_seconds",
                           "Every product id was compared with the catalog since this time (Unix "
                           "time; the start of the last complete pass, which may span checks; "
                           "0: none yet)."),
    }


_METRICS = None


def antientropy_metrics(*, every: float) -> dict:
    """The relay's anti-entropy metrics, registered once: ``antientropy_enabled`` and
    ``antientropy_interval_seconds`` exist whether checks run or not (an alert can see them
    off)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = _metrics()
    _METRICS["enabled"].set(1 if every > 0 else 0)
    _METRICS["interval"].set(max(0.0, every))
    return _METRICS


class _Passes:
    """A pass compares every id once, from 1 to the highest; it may span several checks (each
    that runs out of time is taken up where it stopped). The drift gauges show the kinds found
    by the last complete pass, or by the current one where it found more;
    ``antientropy_last_full_pass_timestamp_seconds`` when the last complete pass began."""

    def __init__(self, m):
        self.m = m
        self.began: float | None = None   # wall time the current pass began at id 1
        self.found: dict[str, int] = {}   # kinds found so far by the current pass
        self.last: dict[str, int] = {}    # kinds found by the last complete pass

    def account(self, check: Check) -> None:
        counts, wrap = check.counts(), check.counts_at_wrap
        if check.start_at == 1:  # a new pass, begun by this check
            self.began, self.found = check.began_at_one, {}
        before = wrap if wrap is not None else counts
        self.found = {k: self.found.get(k, 0) + before[k] for k in Check.KINDS}
        if check.reached_end:
            if self.began is not None:
                self.m["full_pass"].set(self.began)
            self.last = self.found
            if wrap is not None:  # it went on from id 1: the next pass began then
                self.began = check.began_at_one
                self.found = {k: counts[k] - wrap[k] for k in Check.KINDS}
            else:
                self.began, self.found = None, {}
        for kind in Check.KINDS:
            self.m["drifted"].labels(kind).set(max(self.last.get(kind, 0),
                                                   self.found.get(kind, 0)))


def antientropy_forever(*, stop, every: float, catalog_url: str) -> None:
    """Start a check every ``every`` seconds until ``stop`` (a threading.Event) is set, each
    within min(ADMIN_ANTIENTROPY_MAX_SECONDS, ``every``); one that runs out of time is taken up
    where it stopped by the next. Logs one line per check that found drift, something in flight
    or did not finish, or failed, and one when the catalog is readable again."""
    from django.db import close_old_connections

    m = antientropy_metrics(every=every)
    budget = min(settings.ANTIENTROPY_MAX_SECONDS, every)
    failing = False
    resume = 1
    passes = _Passes(m)
    next_at = time.monotonic() + every
    while not stop.wait(max(0.0, next_at - time.monotonic())):
        next_at = time.monotonic() + every
        close_old_connections()
        try:
            check = antientropy_check_locked(catalog_url=catalog_url, start_at=resume,
                                             max_seconds=budget, sleep=stop.wait, again=False)
        except CatalogUnavailable as exc:
            m["checks"].labels("catalog_unavailable").inc()
            partial = exc.check
            if partial is not None:
                m["repaired"].inc(partial.repaired)
                passes.account(partial)
                resume = partial.stopped_at or resume
            if not failing:
                logger.warning("anti-entropy: catalog unreadable, will retry in %gs: %s%s",
                               every, exc, f" ({partial.summary()})" if partial else "")
            failing = True
            continue
        except Exception:
            m["checks"].labels("error").inc()
            logger.exception("anti-entropy check failed; will retry in %gs", every)
            failing = True
            # a new session next time: one that failed may keep what made it fail (a database
            # made read-only keeps its sessions read-only until they are replaced)
            with contextlib.suppress(Exception):
                connection.close()
            continue
        finally:
            close_old_connections()
        if check is None:
            m["checks"].labels("skipped_locked").inc()
            continue
        if failing:
            logger.info("anti-entropy: checks work again")
        failing = False
        m["checks"].labels("ok" if check.complete else "incomplete").inc()
        if check.complete or check.compared:  # a check that compared nothing is no success
            m["last"].set_to_current_time()
        m["not_landing"].set(len(check.not_landing))
        m["duration"].set(check.seconds)
        m["rows"].observe(check.rows_read)
        m["repaired"].inc(check.repaired)
        m["in_flight"].set(len(check.in_flight))
        m["deferred"].set(check.deferred)
        passes.account(check)
        resume = check.stopped_at if not check.complete else check.start_at
        if check.drifted or check.in_flight or not check.complete:
            logger.warning("anti-entropy: %s", check.summary())
        else:
            logger.debug("anti-entropy: %s", check.summary())
        if check.in_flight:
            logger.info("anti-entropy: %d in flight (pending in the outbox or sent in the last "
                        "%gs; not drift, not repaired): %s", len(check.in_flight),
                        settings.ANTIENTROPY_GRACE_SECONDS, check.in_flight[:20])
        if check.ahead or check.unknown:
            logger.warning("anti-entropy: not repaired (the catalog knows more than this database: "
                           "see docs/operations.md, 'Anti-entropy'): ahead %s, unknown %s",
                           check.ahead[:20], check.unknown[:20])
