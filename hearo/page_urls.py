"""The pages, the dashboard's JSON, Django's login views and the language switch.

Included at the root: ``path("", include("hearo.page_urls"))``.
"""

from django.urls import include, path

from common.lockout import LockoutLoginView
from hearo import pages

urlpatterns = [
    path("", pages.waiting_room, name="waiting"),
    path("counselor/", pages.counselor_dashboard, name="dashboard"),
    path("counselor/state", pages.DashboardStateApi.as_view(), name="dashboard-state"),
    # Before Django's auth URLs: the same login, under the password-guessing lock-out.
    path("accounts/login/", LockoutLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
]
