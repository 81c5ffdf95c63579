from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Product(models.Model):
    """The source of truth. Write through ``services`` only: every change must record an event."""

    title = models.CharField(max_length=200)
    image = models.URLField(max_length=500, blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2,
                                validators=[MinValueValidator(0)])
    description = models.TextField(blank=True, default="")
    # Bumped by every create/update/delete; consumers apply an event only if it is newer.
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.title} (#{self.pk})"


class ProductTombstone(models.Model):
    """What is left of a deleted product: its id, final version and last state. Lets resync
    republish deletions and reconcile detect a catalog that still shows a deleted product."""

    product_id = models.BigIntegerField(primary_key=True)
    version = models.PositiveIntegerField()
    data = models.JSONField()
    deleted_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"deleted #{self.product_id} v{self.version}"


class ResyncCheckpoint(models.Model):
    """Progress of the last `manage.py resync` run over all products (resumable)."""

    name = models.CharField(max_length=50, primary_key=True)
    last_product_id = models.BigIntegerField(default=0)
    events = models.BigIntegerField(default=0)
    finished = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"resync {self.name}: after #{self.last_product_id}, {self.events} events"


class OutboxEvent(models.Model):
    """A product event written in the same transaction as the change, published by the relay.

    ``sent_at`` is set only after the broker confirmed the message. A row may be published more
    than once (a crash between confirm and commit); consumers are idempotent by version."""

    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=32)
    product_id = models.BigIntegerField(db_index=True)
    version = models.PositiveIntegerField()
    payload = models.JSONField(help_text="The full event envelope, as sent on the wire.")
    occurred_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(sent_at__isnull=True),
                         name="outbox_pending_idx"),
            models.Index(fields=["sent_at"], condition=Q(sent_at__isnull=False),
                         name="outbox_sent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.product_id} v{self.version}"
