from rest_framework import viewsets

from . import selectors
from .serializers import ProductSerializer


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    """The catalog's products: read-only, no login needed. Deleted products are 404."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        return selectors.product_list()
