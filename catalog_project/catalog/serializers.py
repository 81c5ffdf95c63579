from rest_framework import serializers

from .models import Product


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "title", "image", "price", "description", "version", "updated_at",
                  "last_trace_id"]
        read_only_fields = fields


class ProductVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "version", "deleted"]
        read_only_fields = fields
