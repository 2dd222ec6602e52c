from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from scoreboard import health, metrics, views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("v1/auth/", include("accounts.urls")),
    path("v1/", include("scores.urls")),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    path("", include("realtime.urls")),
    # Anything else under /v1/ is a JSON 404 (never Django's HTML page).
    re_path(r"^v1/.*$", views.api_not_found),
]

handler404 = "scoreboard.views.not_found"
handler500 = "scoreboard.views.server_error"
