from rest_framework import viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.throttling import AnonRateThrottle

from . import selectors, services
from .serializers import ProductSerializer


class ProductViewSet(viewsets.ModelViewSet):
    """Products: thin HTTP layer over ``services`` (writes) and ``selectors`` (reads)."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        return selectors.product_list()

    def perform_create(self, serializer):
        serializer.instance = services.product_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.product_update(
            product_id=serializer.instance.pk, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.product_delete(product_id=instance.pk)


class TokenView(ObtainAuthToken):
    """POST username and password, get the user's API token. Throttled per client address
    (DRF's own view is not), which slows password guessing."""

    throttle_classes = [AnonRateThrottle]
