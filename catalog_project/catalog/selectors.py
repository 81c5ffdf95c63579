"""Reads. Tombstones (deleted products) are never visible through the products API; the
versions list names them (id, version, deleted) and nothing else."""

from django.db.models import QuerySet

from .models import Product


def product_list() -> QuerySet[Product]:
    return Product.objects.filter(deleted=False).order_by("id")


def product_versions_list() -> QuerySet[Product]:
    """Every product id the catalog has applied an event for, deleted ones included."""
    return Product.objects.order_by("id").only("id", "version", "deleted")
