"""Writes. Every product change and its outbox event commit in one transaction."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg2.extras import execute_values

from common.trace import trace_id_get
from product_events import contract

from .models import Product, ProductTombstone

logger = logging.getLogger("admin_project.products")

OUTBOX_CHANNEL = "product_outbox"  # PostgreSQL NOTIFY channel the relay LISTENs on
UPDATABLE_FIELDS = ("title", "image", "price", "description")


def product_snapshot(*, product: Product) -> dict[str, Any]:
    """The product as carried in an event's ``data`` (JSON-ready)."""
    return {
        "id": product.pk,
        "title": product.title,
        "image": product.image,
        "price": f"{Decimal(product.price):.2f}",
        "description": product.description,
        "version": product.version,
        "created_at": product.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": product.updated_at.isoformat().replace("+00:00", "Z"),
    }


def outbox_event_record(*, product: Product, event_type: str) -> int | None:
    """Record the event for ``product``'s current version. Must run inside the change's
    transaction; the NOTIFY wakes the relay when (and only if) that transaction commits."""
    if settings.EVENT_DELIVERY != "outbox":  # benchmark-only comparisons, see settings
        return _event_delivery_compared(product=product, event_type=event_type)
    return outbox_events_record(
        items=[(event_type, product.pk, product.version, product.updated_at,
                product_snapshot(product=product))]
    )[0]


# The rows and the NOTIFY in one statement: one round trip per change, on every write's request
# path. PostgreSQL delivers the notification only if the transaction commits, and folds identical
# notifications of one transaction into one. (Measured over 8 x 3,000 in-process creates, this
# plain INSERT ... RETURNING costs ~70 us less machine CPU per write than the same as a CTE with
# array_agg: see docs/performance.md.)
_OUTBOX_INSERT = f"""
INSERT INTO products_outboxevent (event_id, type, product_id, version, payload, occurred_at)
VALUES %s RETURNING id, pg_notify('{OUTBOX_CHANNEL}', '')
"""
_OUTBOX_ROW = "(%s, %s, %s, %s, %s::jsonb, %s)"
_OUTBOX_INSERT_ONE = _OUTBOX_INSERT.replace("%s", _OUTBOX_ROW, 1)


def outbox_events_record(*, items: list[tuple]) -> list[int]:
    """Record events ``(type, product_id, version, occurred_at, data)`` in the current
    transaction, and wake the relay on commit. Each carries the current trace id (the HTTP
    request's, or the command run's). Returns the outbox row ids."""
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_event_record must run inside the change's transaction")
    if not items:
        return []
    trace_id = trace_id_get()
    rows = []
    for event_type, product_id, version, occurred_at, data in items:
        envelope = contract.envelope_build(event_type=event_type, product_id=product_id,
                                           version=version, occurred_at=occurred_at, data=data,
                                           trace_id=trace_id)
        rows.append((envelope["event_id"], event_type, product_id, version,
                     json.dumps(envelope, separators=(",", ":")), occurred_at))
    with connection.cursor() as cursor:
        if len(rows) == 1:  # the request path: no execute_values overhead
            cursor.execute(_OUTBOX_INSERT_ONE, rows[0])
            return [cursor.fetchone()[0]]
        inserted = execute_values(cursor.cursor, _OUTBOX_INSERT, rows, template=_OUTBOX_ROW,
                                  page_size=len(rows), fetch=True)
    return [row[0] for row in inserted]


def _event_delivery_compared(*, product: Product, event_type: str) -> None:
    if settings.EVENT_DELIVERY == "seed-inline":
        from .seed_style import seed_publish

        seed_publish(contract.envelope_build(
            event_type=event_type, product_id=product.pk, version=product.version,
            occurred_at=product.updated_at, data=product_snapshot(product=product)))
    return None


@transaction.atomic
def product_create(*, title: str, price: Decimal, image: str = "",
                   description: str = "") -> Product:
    now = timezone.now()
    product = Product(title=title, price=price, image=image, description=description,
                      version=1, created_at=now, updated_at=now)
    product.full_clean()
    product.save()
    outbox_event_record(product=product, event_type=contract.PRODUCT_CREATED)
    logger.info("product #%s created (v1)", product.pk)
    return product


@transaction.atomic
def product_update(*, product_id: int, data: dict[str, Any]) -> Product:
    """Apply ``data`` (any of title, image, price, description). The row is locked so that
    concurrent updates get distinct, increasing versions."""
    unknown = set(data) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    product = Product.objects.select_for_update().get(pk=product_id)
    for field, value in data.items():
        setattr(product, field, value)
    product.version += 1
    product.updated_at = timezone.now()
    product.full_clean()
    product.save()
    outbox_event_record(product=product, event_type=contract.PRODUCT_UPDATED)
    logger.info("product #%s updated (v%s): %s", product.pk, product.version, sorted(data))
    return product


@transaction.atomic
def product_delete(*, product_id: int) -> None:
    product = Product.objects.select_for_update().get(pk=product_id)
    product.version += 1
    product.updated_at = timezone.now()
    outbox_event_record(product=product, event_type=contract.PRODUCT_DELETED)
    ProductTombstone.objects.update_or_create(
        product_id=product.pk,
        defaults={"version": product.version, "data": product_snapshot(product=product),
                  "deleted_at": product.updated_at},
    )
    product.delete()
    logger.info("product #%s deleted (v%s)", product_id, product.version)
