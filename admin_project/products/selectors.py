"""Reads."""

from django.db.models import QuerySet

from .models import OutboxEvent, Product


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("id")


def outbox_pending_count() -> int:
    """How many events wait in the outbox for the relay."""
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()
