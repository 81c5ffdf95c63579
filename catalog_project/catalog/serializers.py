from rest_framework import serializers

from product_events import digest

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


class DigestQuerySerializer(serializers.Serializer):
    """Query of ``/api/product-digests/``: ids [start, end) (empty when end <= start), split
    into ``parts``."""

    start = serializers.IntegerField(min_value=0, max_value=digest.MAX_ID)
    end = serializers.IntegerField(min_value=0, max_value=digest.MAX_END)
    parts = serializers.IntegerField(min_value=1, max_value=digest.MAX_PARTS, default=16)
    max_rows = serializers.IntegerField(
        min_value=1, max_value=digest.MAX_DIGEST_ROWS, default=digest.MAX_DIGEST_ROWS,
        help_text="digest at most this many rows: the answer's end says where it stopped")


class DigestRowsQuerySerializer(serializers.Serializer):
    """Query of ``/api/product-digests/rows/``: the first rows of ids [start, end)."""

    start = serializers.IntegerField(min_value=0, max_value=digest.MAX_ID)
    end = serializers.IntegerField(min_value=0, max_value=digest.MAX_END)


class DigestPartSerializer(serializers.Serializer):
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    count = serializers.IntegerField()
    digest = serializers.CharField()


class DigestSerializer(serializers.Serializer):
    start = serializers.IntegerField()
    end = serializers.IntegerField(help_text=(
        "the end of the range covered: smaller than asked when the range holds more than "
        "max_rows rows (ask again from here)"))
    max_id = serializers.IntegerField()
    parts = DigestPartSerializer(many=True)


class DigestRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    deleted = serializers.BooleanField()
    hash = serializers.CharField()


class DigestRowsSerializer(serializers.Serializer):
    rows = DigestRowSerializer(many=True)
    next = serializers.IntegerField(allow_null=True, help_text=(
        f"where the next page starts (at most {digest.MAX_ROWS} rows a page); null at the end"))
