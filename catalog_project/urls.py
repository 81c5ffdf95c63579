from django.urls import include, path
from rest_framework.routers import DefaultRouter

from catalog_project.catalog.views import ProductViewSet

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")

urlpatterns = [
    path("api/", include(router.urls)),
]
