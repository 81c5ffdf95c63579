"""Writes. Every product change and its outbox event commit in one transaction."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from admin_project.outbox.record import EventItem, outbox_events_record
from product_events import contract

from .models import Product, ProductTombstone

logger = logging.getLogger("admin_project.products")

UPDATABLE_FIELDS = ("title", "image", "price", "description")


# The columns a product's snapshot is made of, in ``product_snapshot_row``'s order: what a read
# of many products asks for (``values_list(*SNAPSHOT_COLUMNS)``) instead of model instances.
SNAPSHOT_COLUMNS = ("id", "title", "image", "price", "description", "version", "created_at",
                    "updated_at")


def product_snapshot_row(row: tuple) -> dict[str, Any]:
    """The product as carried in an event's ``data`` (JSON-ready), from a row of
    ``SNAPSHOT_COLUMNS``."""
    pk, title, image, price, description, version, created_at, updated_at = row
    return {
        "id": pk,
        "title": title,
        "image": image,
        # a negative zero ("-0", "-0.00", accepted as >= 0) is written as 0.00
        "price": f"{Decimal(price) + 0:.2f}",
        "description": description,
        "version": version,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": updated_at.isoformat().replace("+00:00", "Z"),
    }


def product_snapshot(*, product: Product) -> dict[str, Any]:
    """The product as carried in an event's ``data`` (JSON-ready)."""
    return product_snapshot_row((product.pk, product.title, product.image, product.price,
                                 product.description, product.version, product.created_at,
                                 product.updated_at))


def product_event_record(*, product: Product, event_type: str) -> None:
    """Record the event of ``product``'s current version in the outbox. Must run inside the
    change's transaction; the relay is woken when (and only if) that transaction commits."""
    outbox_events_record(items=[EventItem(event_type, product.pk, product.version,
                                          product.updated_at, product_snapshot(product=product))])


@transaction.atomic
def product_create(*, title: str, price: Decimal, image: str = "",
                   description: str = "") -> Product:
    now = timezone.now()
    product = Product(title=title, price=price, image=image, description=description,
                      version=1, created_at=now, updated_at=now)
    product.full_clean()
    product.save()
    product_event_record(product=product, event_type=contract.PRODUCT_CREATED)
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
    product_event_record(product=product, event_type=contract.PRODUCT_UPDATED)
    logger.info("product #%s updated (v%s): %s", product.pk, product.version, sorted(data))
    return product


@transaction.atomic
def product_delete(*, product_id: int) -> None:
    product = Product.objects.select_for_update().get(pk=product_id)
    product.version += 1
    product.updated_at = timezone.now()
    product_event_record(product=product, event_type=contract.PRODUCT_DELETED)
    ProductTombstone.objects.update_or_create(
        product_id=product.pk,
        defaults={"version": product.version, "data": product_snapshot(product=product),
                  "deleted_at": product.updated_at},
    )
    product.delete()
    logger.info("product #%s deleted (v%s)", product_id, product.version)


# --- after a restore of the admin database (restore.py): versions the subscribers saw ---

def _iso(at) -> str:
    return at.isoformat().replace("+00:00", "Z")


@transaction.atomic
def product_version_raise(*, product_id: int, version: int) -> Product:
    """Move a product to ``version`` (above its own) and record its state as an update, so that
    subscribers holding a version this database has forgotten take it."""
    product = Product.objects.select_for_update().get(pk=product_id)
    if version <= product.version:
        raise ValueError(f"product #{product_id} is at v{product.version}, not below v{version}")
    product.version = version
    product.updated_at = timezone.now()
    product.save(update_fields=["version", "updated_at"])
    product_event_record(product=product, event_type=contract.PRODUCT_UPDATED)
    logger.info("product #%s raised to v%s", product_id, version)
    return product


@transaction.atomic
def product_deletion_record(*, product_id: int, version: int,
                            data: dict[str, Any]) -> ProductTombstone:
    """Record that ``product_id``, which has no row here, is deleted at ``version`` (``data``:
    its last known state) and record the delete event: for a product the subscribers hold that
    this database does not (or holds deleted at a lower version)."""
    if Product.objects.filter(pk=product_id).exists():
        raise ValueError(f"product #{product_id} exists: delete it with product_delete")
    known = ProductTombstone.objects.filter(product_id=product_id).first()
    if known is not None and known.version >= version:
        raise ValueError(f"product #{product_id} is deleted at v{known.version} already")
    now = timezone.now()
    snapshot = {**data, "id": product_id, "version": version, "updated_at": _iso(now)}
    tombstone, _ = ProductTombstone.objects.update_or_create(
        product_id=product_id,
        defaults={"version": version, "data": snapshot, "deleted_at": now})
    outbox_events_record(items=[EventItem(contract.PRODUCT_DELETED, product_id, version, now,
                                          snapshot)])
    logger.info("product #%s recorded as deleted (v%s)", product_id, version)
    return tombstone
