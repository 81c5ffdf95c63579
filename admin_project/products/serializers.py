from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from .models import Product

_PRICE = {"type": "string", "format": "decimal", "pattern": r"^\d{1,10}\.\d{2}$",
          "example": "9.90"}


class PriceField(serializers.DecimalField):
    """A price: ">= 0, 2 decimal places". Read as a string ("9.90") or a JSON number (9.9);
    always written as a string."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=12, decimal_places=2, min_value=0, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data) + 0  # "-0" and "-0.00" are 0.00


class PriceFieldSchema(OpenApiSerializerFieldExtension):
    target_class = PriceField

    def map_serializer_field(self, auto_schema, direction):
        if direction == "request":
            return {"oneOf": [{"type": "string", "pattern": r"^\d{1,10}(\.\d{1,2})?$"},
                              {"type": "number", "minimum": 0, "maximum": 9999999999.99,
                               "multipleOf": 0.01}],
                    "example": "9.90"}
        return _PRICE


class ProductSerializer(serializers.ModelSerializer):
    """Input and output of the admin API. Unknown fields are rejected (400), not ignored."""

    price = PriceField()

    class Meta:
        model = Product
        fields = ["id", "title", "image", "price", "description", "version",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "version", "created_at", "updated_at"]

    def to_internal_value(self, data):
        unknown = sorted(set(data.keys()) - set(self.fields)) if hasattr(data, "keys") else []
        errors = {name: ["Unknown field."] for name in unknown}
        if hasattr(data, "keys"):  # text fields take text only (DRF would turn 0 into "0")
            errors |= {name: ["Not a valid string."] for name, field in self.fields.items()
                       if isinstance(field, serializers.CharField) and not field.read_only
                       and name in data and data[name] is not None
                       and not isinstance(data[name], str)}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            errors = {**exc.detail, **errors}
        if errors:
            raise serializers.ValidationError(errors)
        return value
