"""Reads. Tombstones (deleted products) are never visible through the API."""

from django.db.models import QuerySet

from .models import Product


def product_list() -> QuerySet[Product]:
    return Product.objects.filter(deleted=False).order_by("id")
