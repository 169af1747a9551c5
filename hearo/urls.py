from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hearo.api import json_error_view
from matching import apis as matching_apis
from queues import apis as queue_apis

api = [
    path("api/queue/join", queue_apis.JoinApi.as_view(), name="queue-join"),
    path("api/queue/heartbeat", queue_apis.HeartbeatApi.as_view(), name="queue-heartbeat"),
    path("api/queue/rank", queue_apis.RankApi.as_view(), name="queue-rank"),
    path("api/queue/cancel", queue_apis.CancelApi.as_view(), name="queue-cancel"),
    path("api/auth/token", matching_apis.TokenApi.as_view(), name="auth-token"),
    path("api/counselor/me", matching_apis.MeApi.as_view(), name="counselor-me"),
    path("api/counselor/status", matching_apis.StatusApi.as_view(), name="counselor-status"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    *api,
    path("admin/", admin.site.urls),
]

handler404 = json_error_view(404, "not_found", "no such resource")
handler500 = json_error_view(500, "server_error", "internal error; it has been logged")
