from rest_framework import viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound
from rest_framework.settings import api_settings

from common.errors import DatabaseRetryMixin
from common.pagination import KeysetJSONListMixin
from common.throttling import LOGIN_THROTTLES, AnonRateThrottle

from . import selectors, services
from .models import Product
from .serializers import ProductSerializer


# KeysetJSONListMixin: cursor pages in JSON written from the rows' columns, without model
# instances or the serializer (the same bytes; common.pagination)
class ProductViewSet(DatabaseRetryMixin, KeysetJSONListMixin, viewsets.ModelViewSet):
    """Products: thin HTTP layer over ``services`` (writes) and ``selectors`` (reads)."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"[0-9]{1,18}"
    cursor_ordering = "id"  # ?cursor=: keyset pages (common.pagination)

    def get_queryset(self):
        return selectors.product_list()

    def perform_create(self, serializer):
        serializer.instance = services.product_create(**serializer.validated_data)

    def perform_update(self, serializer):
        try:
            serializer.instance = services.product_update(
                product_id=serializer.instance.pk, data=serializer.validated_data)
        except Product.DoesNotExist:  # deleted by another request since it was read
            raise NotFound() from None

    def perform_destroy(self, instance):
        try:
            services.product_delete(product_id=instance.pk)
        except Product.DoesNotExist:  # deleted by another request since it was read
            raise NotFound() from None


class TokenView(ObtainAuthToken):
    """POST username and password, get the user's API token. Throttled per client address and
    per account name (DRF's own view is not), shared with the Django admin's login form."""

    throttle_classes = [AnonRateThrottle, *LOGIN_THROTTLES]
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES  # DRF's view lists its own
