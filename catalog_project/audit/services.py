"""Writes: record product events in the audit log, idempotently (by event id)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection, transaction
from psycopg2.extras import execute_values

from product_events.contract import ProductEvent

# a change seen again (redelivered, resynced, repaired: the same event id) is counted, not
# recorded twice; xmax = 0 tells a row inserted now from one updated
_INSERT = """
INSERT INTO audit_productchange AS c
    (event_id, type, product_id, version, occurred_at, changed_at, trace_id, data,
     recorded_at, deliveries, last_delivered_at)
VALUES %s
ON CONFLICT (event_id) DO UPDATE
    SET deliveries = c.deliveries + 1, last_delivered_at = now()
RETURNING event_id::text, (xmax = 0) AS inserted
"""
_TEMPLATE = "(%s, %s, %s, %s, %s, %s, %s, %s, now(), 1, now())"


@dataclass(frozen=True)
class RecordResult:
    applied: int   # events recorded now
    stale: int     # already recorded (redeliveries, duplicates)
    applied_events: tuple[ProductEvent, ...] = ()


def product_changes_record(*, events: list[ProductEvent]) -> RecordResult:
    if not events:
        return RecordResult(applied=0, stale=0)
    unique = {ev.event_id: ev for ev in events}  # one statement may touch a row only once
    # changed_at: the change's own time (data.updated_at, required by the contract); a resync
    # or a repair sends it again with occurred_at = that sending (docs/events.md)
    rows = [(ev.event_id, ev.type, ev.product_id, ev.version, ev.occurred_at,
             ev.data["updated_at"], ev.trace_id or "", json.dumps(ev.data))
            for ev in unique.values()]
    with transaction.atomic(), connection.cursor() as cursor:
        inserted = {r[0] for r in execute_values(cursor.cursor, _INSERT, rows,
                                                 template=_TEMPLATE, fetch=True) if r[1]}
    recorded = tuple(ev for ev in events if ev.event_id in inserted)
    return RecordResult(applied=len(recorded), stale=len(events) - len(recorded),
                        applied_events=recorded)
