"""Writes: apply product events, idempotently and ordered by version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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


class ProductRow(NamedTuple):
    """One catalog row as the upsert writes it (``applied_at`` is the database's now())."""

    id: int
    title: str
    image: str
    price: str
    description: str
    version: int
    updated_at: str
    deleted: bool
    last_event_id: str
    last_trace_id: str


def product_rows_upsert(*, rows: list[ProductRow]) -> list[int]:
    """Write ``rows`` in one statement, each only if its version is newer than the stored one.
    Runs in the caller's transaction. Returns the ids of the rows that changed."""
    with connection.cursor() as cursor:
        changed = execute_values(cursor.cursor, _UPSERT, rows, template=_TEMPLATE,
                                 page_size=500, fetch=True)
    return [row[0] for row in changed]


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
        ProductRow(
            ev.product_id, ev.data["title"], ev.data["image"], ev.data["price"],
            ev.data["description"], ev.version, ev.data["updated_at"], ev.is_delete,
            ev.event_id, ev.trace_id or "",
        )
        for ev in sorted(newest.values(), key=lambda e: e.product_id)  # stable lock order
    ]
    with transaction.atomic():
        changed = product_rows_upsert(rows=rows)
    applied = tuple(newest[product_id] for product_id in changed)
    return ApplyResult(applied=len(applied), stale=len(events) - len(applied),
                       applied_events=applied)
