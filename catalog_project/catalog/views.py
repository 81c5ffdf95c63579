from rest_framework import mixins, viewsets

from . import selectors
from .serializers import ProductSerializer, ProductVersionSerializer


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    """The catalog's products: read-only, no login needed. Deleted products are 404."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        return selectors.product_list()


class ProductVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The version of every product id the catalog holds, deleted ones included (their data
    stays hidden). What the admin's `restore_fence` compares a restored admin database with:
    ids and versions the subscribers saw that the backup does not know."""

    serializer_class = ProductVersionSerializer

    def get_queryset(self):
        return selectors.product_versions_list()
