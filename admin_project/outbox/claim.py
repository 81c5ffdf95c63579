"""Take pending outbox rows for publishing, and give back the ones that were not sent."""

from __future__ import annotations

from typing import NamedTuple

from .models import PENDING_SQL, TABLE


class ClaimedEvent(NamedTuple):
    """A pending row claimed by this relay. ``payload`` is the envelope's JSON text as stored
    (spliced into the message unparsed)."""

    id: int
    type: str
    product_id: int
    version: int
    event_id: str
    payload: str
    trace_id: str | None

    def ref(self) -> dict:
        """What the message's headers say of this event (``product_events.message``)."""
        return {"type": self.type, "product_id": self.product_id, "version": self.version,
                "event_id": self.event_id}


class Claim(NamedTuple):
    """The rows of one claim, and whether more were pending than it took (by count or bytes)."""

    rows: list[ClaimedEvent]
    more: bool


# Claim and mark in one statement; the caller's transaction stays open until the broker
# confirmed the messages, so a crash or a failed publish rolls the rows back to pending (SKIP
# LOCKED: several relays never claim the same rows). A claim takes up to ``limit`` rows and stops
# before the row that would take it past ``max_bytes`` of payload (it always takes the first
# one), so a run of large events never loads more than about ``max_bytes`` into the relay.
# Rows locked but not taken stay locked until the commit; the next claim takes them. The columns
# follow ClaimedEvent's fields, then how many rows were locked.
#
# The pending rows are read in id order through outbox_pending_idx, never by a bitmap scan (SET
# LOCAL: this transaction only). A sent row leaves its entry in that partial index until a
# vacuum, and after a resync or a long outage those are most of it. Without statistics (a table
# never analyzed: a new database, autovacuum behind or off) the planner chose a bitmap scan from
# about 100,000 rows on: it visits the heap for every such entry on every claim and never marks
# them dead, so every claim, and every count of the backlog, grew with the table. An index scan
# in id order marks them dead once, steps over them after that and stops after ``limit`` rows.
# Measured 2026-12-07, resync of 1,000,000 products on a fresh database, end to end: 449 s
# before, 107 s with the index order (tests/admin/test_relay_limits.py checks the plan).
_INDEX_ORDER = "SET LOCAL enable_bitmapscan = off;"
_CLAIM = f"""
WITH locked AS (
    SELECT id, size FROM {TABLE} WHERE {PENDING_SQL}
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), taken AS (
    SELECT id FROM (SELECT id, sum(size) OVER (ORDER BY id) - size AS before FROM locked) s
    WHERE before < %(max_bytes)s
)
UPDATE {TABLE} o SET sent_at = now() FROM taken WHERE o.id = taken.id
RETURNING o.id, o.type, o.product_id, o.version, o.event_id::text, o.payload::text,
          o.payload->>'trace_id', (SELECT count(*) FROM locked)
"""
_UNSEND = f"UPDATE {TABLE} SET sent_at = NULL WHERE id = ANY(%s)"
_SET_ASIDE = (f"UPDATE {TABLE} SET sent_at = NULL, set_aside_at = now(), set_aside_reason = %s"
              " WHERE id = %s")


def outbox_claim(*, cursor, limit: int, max_bytes: int) -> Claim:
    """Claim pending rows in id order (up to ``limit`` rows and about ``max_bytes`` of payload),
    inside the cursor's transaction."""
    cursor.execute(_INDEX_ORDER + _CLAIM, {"limit": limit, "max_bytes": max_bytes})
    fetched = cursor.fetchall()
    if not fetched:
        return Claim([], False)
    locked = fetched[0][-1]
    rows = [ClaimedEvent(*row[:-1]) for row in fetched]
    rows.sort(key=lambda r: r.id)
    return Claim(rows, more=locked >= limit or len(rows) < locked)


def outbox_unclaim(*, cursor, ids: list[int]) -> None:
    """Return claimed rows to pending (their publish failed or was never tried)."""
    if ids:
        cursor.execute(_UNSEND, [ids])


def outbox_set_aside(*, cursor, row_id: int, reason: str) -> None:
    """Take a claimed row out of the pending ones for good, saying why (in the transaction)."""
    cursor.execute(_SET_ASIDE, [reason, row_id])
