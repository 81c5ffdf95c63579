from django.db import models


class ProductChange(models.Model):
    """One product event, as received: one row per event id (an event id names a change, so a
    redelivery, a resync or a repair of it is not recorded twice: ``deliveries`` counts them and
    ``last_delivered_at`` says when the last came). Ordered by the product's version.
    ``changed_at`` dates the change itself, also in a row that a resync recreated (after a
    restore of this database): ``occurred_at`` and ``trace_id`` are those of the event that
    brought it, the resync's then (the admin keeps no trace id of a past change)."""

    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=32)
    product_id = models.BigIntegerField()
    version = models.PositiveIntegerField()
    # when the change was sent (the envelope's occurred_at: for a change sent again by a resync
    # or a repair, that sending) and when it happened in the admin (its data's updated_at)
    occurred_at = models.DateTimeField()
    changed_at = models.DateTimeField()
    trace_id = models.CharField(max_length=64, blank=True, db_default="")
    data = models.JSONField()
    recorded_at = models.DateTimeField(db_default=models.functions.Now())
    deliveries = models.PositiveIntegerField(db_default=1)
    last_delivered_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        db_table = "audit_productchange"
        ordering = ["product_id", "version"]
        indexes = [models.Index(fields=["product_id", "version"], name="audit_product_version")]

    def __str__(self) -> str:
        return f"{self.type} #{self.product_id} v{self.version}"
