from rest_framework import serializers

from .models import Product


class ProductSerializer(serializers.ModelSerializer):
    """Input and output of the admin API. Unknown fields are rejected (400), not ignored."""

    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)

    class Meta:
        model = Product
        fields = ["id", "title", "image", "price", "description", "version",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "version", "created_at", "updated_at"]

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)
