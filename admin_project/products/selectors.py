"""Reads."""

from django.db import connection
from django.db.models import QuerySet

from .models import OutboxEvent, Product


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("id")


def outbox_backlog() -> tuple[int, float]:
    """(pending events, age in seconds of the oldest pending one, 0 when none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), GREATEST(0, COALESCE("
            " EXTRACT(EPOCH FROM clock_timestamp() - min(occurred_at)), 0))"
            " FROM products_outboxevent WHERE sent_at IS NULL")
        pending, age = cursor.fetchone()
    return pending, float(age)


def outbox_pending_count() -> int:
    """How many events wait in the outbox for the relay."""
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()
