"""Reads."""

from django.db.models import Min, QuerySet

from .models import OutboxEvent, Product


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("id")


def outbox_pending_stats() -> dict:
    """Backlog of the outbox: how many events wait, and since when."""
    pending = OutboxEvent.objects.filter(sent_at__isnull=True)
    agg = pending.aggregate(oldest=Min("occurred_at"))
    return {"pending": pending.count(), "oldest_occurred_at": agg["oldest"]}
