from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual

from product_events.contract import PRODUCT_MAX_LENGTH

MAX = PRODUCT_MAX_LENGTH  # the contract's limits (docs/events.md)


class Product(models.Model):
    """The catalog's replica of an admin product, keyed by the admin's id.

    Written only by ``services.product_events_apply``: a row changes only for an event whose
    ``version`` is newer than the stored one. A delete keeps the row as a tombstone
    (``deleted=True``) so that a late, older update cannot bring the product back."""

    id = models.BigIntegerField(primary_key=True)
    title = models.CharField(max_length=MAX["title"])
    image = models.CharField(max_length=MAX["image"], blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2)
    description = models.TextField(max_length=MAX["description"], blank=True, default="")
    version = models.PositiveIntegerField()
    updated_at = models.DateTimeField()
    deleted = models.BooleanField(default=False)
    last_event_id = models.UUIDField()
    last_trace_id = models.CharField(max_length=64, blank=True, db_default="",
                                     help_text="Trace id of the change (common.trace).")
    applied_at = models.DateTimeField()

    class Meta:
        db_table = "catalog_product"
        ordering = ["id"]
        indexes = [models.Index(fields=["id"], condition=models.Q(deleted=False),
                                name="catalog_product_live_idx")]
        constraints = [
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("description"), MAX["description"]),
                name="catalog_product_description_max_length"),
        ]

    def __str__(self) -> str:
        return f"{self.title} (#{self.pk} v{self.version})"
