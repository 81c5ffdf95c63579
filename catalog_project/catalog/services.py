"""Writes: apply product events, idempotently and ordered by version."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from psycopg2.extras import execute_values

from product_events.contract import ProductEvent

# One statement for the whole batch. The WHERE clause is the whole ordering rule: a row changes
# only when the incoming version is newer. Duplicates and stale events match nothing.
_UPSERT = """
INSERT INTO catalog_product
    (id, title, image, price, description, version, updated_at, deleted, last_event_id,
     last_trace_id, applied_at)
VALUES %s
ON CONFLICT (id) DO UPDATE SET
    title = EXCLUDED.title, image = EXCLUDED.image, price = EXCLUDED.price,
    description = EXCLUDED.description, version = EXCLUDED.version,
    updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted,
    last_event_id = EXCLUDED.last_event_id, last_trace_id = EXCLUDED.last_trace_id,
    applied_at = EXCLUDED.applied_at
WHERE catalog_product.version < EXCLUDED.version
RETURNING id
"""
_TEMPLATE = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"


@dataclass(frozen=True)
class ApplyResult:
    applied: int   # events that changed a row
    stale: int     # duplicates and events older than what is stored (ignored)
    applied_events: tuple[ProductEvent, ...] = ()


def product_events_apply(*, events: list[ProductEvent]) -> ApplyResult:
    """Apply a batch of valid events in one transaction. Any order, any duplication: the row ends
    at the highest version seen, and a delete (tombstone) is never undone by an older event."""
    if not events:
        return ApplyResult(applied=0, stale=0)
    newest: dict[int, ProductEvent] = {}
    for event in events:
        current = newest.get(event.product_id)
        if current is None or event.version > current.version:
            newest[event.product_id] = event
    rows = [
        (
            ev.product_id, ev.data["title"], ev.data["image"], ev.data["price"],
            ev.data["description"], ev.version, ev.data["updated_at"], ev.is_delete,
            ev.event_id, ev.trace_id or "",
        )
        for ev in sorted(newest.values(), key=lambda e: e.product_id)  # stable lock order
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        changed = execute_values(cursor.cursor, _UPSERT, rows, template=_TEMPLATE,
                                 page_size=500, fetch=True)
    applied = tuple(newest[row[0]] for row in changed)
    return ApplyResult(applied=len(applied), stale=len(events) - len(applied),
                       applied_events=applied)
