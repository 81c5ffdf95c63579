from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError

from common.errors import DatabaseRetryMixin
from common.pagination import ascii_int

from . import selectors
from .models import ProductChange


class ProductChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductChange
        fields = ["event_id", "type", "product_id", "version", "changed_at", "occurred_at",
                  "trace_id",
                  "data", "recorded_at", "deliveries", "last_delivered_at"]
        read_only_fields = fields


MAX_ID = 2**63 - 1


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter(
    "product_id", {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    description="Only this product's changes.")]))
class ProductChangeViewSet(DatabaseRetryMixin, viewsets.ReadOnlyModelViewSet):
    """The audit log: every product event the audit subscriber received, oldest version first."""

    serializer_class = ProductChangeSerializer
    lookup_field = "event_id"

    def get_queryset(self):
        raw = self.request.query_params.getlist("product_id")
        product_id = ascii_int(raw[0], maximum=MAX_ID) if len(raw) == 1 else None
        if raw and product_id is None:
            raise ValidationError({"product_id": [
                f"A whole number from 1 to {MAX_ID}, given once."]})
        return selectors.product_changes_list(product_id=product_id)
