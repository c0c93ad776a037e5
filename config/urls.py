"""URL routing: the dashboard (HTML, server-rendered) and the API under /api/v1/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api")),
    path("audit/", include("audit.urls")),
    path("", include("consent.urls")),
    path("", include("training.urls")),
    path("", include("editing.review_urls")),
    path("", include("editing.urls")),
    path("", include("editing.releases.urls")),
    path("", include("tenancy.urls")),
]

handler400 = "config.errors.bad_request"
