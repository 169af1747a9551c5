from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from common.api import json_error_view
from common.lockout import AdminLockoutLoginView
from hearo import health
from matching import apis as matching_apis
from matching import staff_apis as matching_staff_apis
from queues import apis as queue_apis
from queues import staff_apis as queue_staff_apis

api = [
    path("api/queue/join", queue_apis.JoinApi.as_view(), name="queue-join"),
    path("api/queue/heartbeat", queue_apis.HeartbeatApi.as_view(), name="queue-heartbeat"),
    path("api/queue/rank", matching_apis.RankApi.as_view(), name="queue-rank"),
    path("api/queue/cancel", matching_apis.CancelApi.as_view(), name="queue-cancel"),
    path("api/auth/token", matching_apis.TokenApi.as_view(), name="auth-token"),
    path("api/counselor/me", matching_apis.MeApi.as_view(), name="counselor-me"),
    path("api/counselor/status", matching_apis.StatusApi.as_view(), name="counselor-status"),
    path("api/counselor/heartbeat", matching_apis.HeartbeatApi.as_view(), name="counselor-heartbeat"),
    path("api/livekit/token", matching_apis.RoomTokenApi.as_view(), name="livekit-token"),
    path("api/livekit/webhook", matching_apis.LiveKitWebhookApi.as_view(), name="livekit-webhook"),
    path("api/matches/<int:match_id>/joined", matching_apis.MatchJoinedApi.as_view(), name="match-joined"),
    path("api/matches/<int:match_id>/complete", matching_apis.MatchCompleteApi.as_view(), name="match-complete"),
    path(
        "api/matches/<int:match_id>/call-failed", matching_apis.MatchCallFailedApi.as_view(), name="match-call-failed"
    ),
    path("api/matches/<int:match_id>/release", matching_apis.MatchReleaseApi.as_view(), name="match-release"),
    path("api/queues", matching_apis.QueuesApi.as_view(), name="queues"),
    path("api/admin/queues", queue_staff_apis.QueuesApi.as_view(), name="admin-queues"),
    path("api/admin/queues/<slug:queueId>", queue_staff_apis.QueueApi.as_view(), name="admin-queue"),
    path("api/admin/counselors", matching_staff_apis.CounselorsApi.as_view(), name="admin-counselors"),
    path("api/admin/counselors/<str:counselorId>", matching_staff_apis.CounselorApi.as_view(), name="admin-counselor"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

operations = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.prometheus, name="metrics"),
]

urlpatterns = [
    *api,
    *operations,
    # Before the admin's own URLs: its login, under the password-guessing lock-out.
    path("admin/login/", AdminLockoutLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("", include("hearo.page_urls")),
]

# A refused request (a bad Host header, a body over DATA_UPLOAD_MAX_MEMORY_SIZE)
# gets the JSON error shape too, not Django's HTML "Bad Request (400)".
handler400 = json_error_view(400, "bad_request", "the request was refused (bad Host header or body too large)")
handler404 = json_error_view(404, "not_found", "no such resource")
handler500 = json_error_view(500, "server_error", "internal error; it has been logged")
