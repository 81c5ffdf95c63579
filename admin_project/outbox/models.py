from django.db import models
from django.db.models import Q

# What the relay still has to publish: not sent, not set aside.
PENDING = Q(sent_at__isnull=True, set_aside_at__isnull=True)
PENDING_SQL = "sent_at IS NULL AND set_aside_at IS NULL"


class OutboxEvent(models.Model):
    """A product event written in the same transaction as the change, published by the relay.

    ``sent_at`` is set only after the broker confirmed the message. A row may be published more
    than once (a crash between confirm and commit); consumers are idempotent by version."""

    # The change's id (product_events.contract.event_id_for), not unique: a resync or repair
    # records the same change again under the same id.
    event_id = models.UUIDField(db_index=True)
    type = models.CharField(max_length=32)
    product_id = models.BigIntegerField(db_index=True)
    version = models.PositiveIntegerField()
    payload = models.JSONField(help_text="The full event envelope, as sent on the wire.")
    occurred_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # Bytes of the payload as recorded: the relay bounds the bytes of a claim with it.
    size = models.PositiveIntegerField(default=0, db_default=0)
    # Set by the relay for an event it can never send (larger than a message may be, an unknown
    # type): it leaves the pending rows, so it never holds the rest back; an operator fixes the
    # cause and returns it to pending (admin action). ``relay_events_set_aside`` counts them.
    set_aside_at = models.DateTimeField(null=True, blank=True)
    set_aside_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        # The table was created by the products app (it moved here without a copy).
        db_table = "products_outboxevent"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id"], condition=PENDING, name="outbox_pending_idx"),
            models.Index(fields=["id"], condition=Q(set_aside_at__isnull=False),
                         name="outbox_set_aside_idx"),
            models.Index(fields=["sent_at"], condition=Q(sent_at__isnull=False),
                         name="outbox_sent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.product_id} v{self.version}"


TABLE = OutboxEvent._meta.db_table  # for the SQL of record, claim and the selectors
