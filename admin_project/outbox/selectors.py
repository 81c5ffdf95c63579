"""Reads of the outbox."""

from django.db import connection

from .models import PENDING, PENDING_SQL, TABLE, OutboxEvent


def outbox_backlog() -> tuple[int, float]:
    """(pending events, age in seconds of the oldest pending one, 0 when none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), GREATEST(0, COALESCE("
            " EXTRACT(EPOCH FROM clock_timestamp() - min(occurred_at)), 0))"
            f" FROM {TABLE} WHERE {PENDING_SQL}")
        pending, age = cursor.fetchone()
    return pending, float(age)


def outbox_pending_count() -> int:
    """How many events wait in the outbox for the relay."""
    return OutboxEvent.objects.filter(PENDING).count()


def outbox_set_aside_count() -> int:
    """How many events the relay set aside (it can never send them as they are)."""
    return OutboxEvent.objects.filter(set_aside_at__isnull=False).count()
