from django.core.validators import MaxLengthValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from product_events.contract import PRODUCT_MAX_LENGTH

MAX = PRODUCT_MAX_LENGTH  # the contract's limits (docs/events.md), also checked by the database


class Product(models.Model):
    """The source of truth. Write through ``services`` only: every change must record an event."""

    title = models.CharField(max_length=MAX["title"])
    image = models.URLField(max_length=MAX["image"], blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2,
                                validators=[MinValueValidator(0)])
    # A TextField's max_length is not a model validator (only a form's limit): the validator
    # checks it in full_clean, and the database's constraint below enforces it on every write.
    description = models.TextField(max_length=MAX["description"], blank=True, default="",
                                   validators=[MaxLengthValidator(MAX["description"])])
    # Bumped by every create/update/delete; consumers apply an event only if it is newer.
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [  # a TextField's max_length is not enforced by the database otherwise
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("description"), MAX["description"]),
                name="product_description_max_length"),
        ]

    def __str__(self) -> str:
        return f"{self.title} (#{self.pk})"

    # Constraints that a field's validator already checks in full_clean. Django would check them
    # again with a query of its own (SAVEPOINT, SELECT 1 WHERE ..., RELEASE: three of the seven
    # statements of every create and update); the database still enforces them on the write.
    # (len() counts code points as LENGTH() does in a UTF8 database, as compose's and the tests'
    # are; in SQL_ASCII it counts bytes, and the database would refuse what the check let by.)
    CONSTRAINTS_CHECKED_BY_VALIDATORS = frozenset({"product_description_max_length"})

    def get_constraints(self):
        return [(model, [c for c in constraints
                         if c.name not in self.CONSTRAINTS_CHECKED_BY_VALIDATORS])
                for model, constraints in super().get_constraints()]


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
