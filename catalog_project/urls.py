from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from catalog_project.audit.views import ProductChangeViewSet
from catalog_project.catalog.views import (
    ProductDigestRowsView,
    ProductDigestView,
    ProductVersionViewSet,
    ProductViewSet,
)
from common.health import healthz, readyz
from common.metrics import metrics_view

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")
router.register("product-changes", ProductChangeViewSet, basename="product-change")
router.register("product-versions", ProductVersionViewSet, basename="product-version")

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/product-digests/", ProductDigestView.as_view(), name="product-digests"),
    path("api/product-digests/rows/", ProductDigestRowsView.as_view(), name="product-digest-rows"),
    path("api/", include(router.urls)),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

handler404 = "common.errors.not_found"
handler400 = "common.errors.bad_request"
handler500 = "common.errors.server_error"
