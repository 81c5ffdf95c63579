from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from admin_project.products.views import ProductViewSet, TokenView
from common.health import healthz, readyz
from common.metrics import metrics_view
from common.throttling import login_throttled

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")

urlpatterns = [
    # the admin's login form shares the token endpoint's password-guessing throttle
    path("admin/login/", login_throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/auth/token/", TokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include(router.urls)),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

handler404 = "common.errors.not_found"
handler400 = "common.errors.bad_request"
handler500 = "common.errors.server_error"
