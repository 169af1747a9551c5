"""Create the demo counselor ``counselor1`` (OFFLINE) unless it exists."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from matching import counselors

USERNAME = "counselor1"


class Command(BaseCommand):
    help = "Create the demo counselor counselor1 unless it exists (password from HEARO_DEMO_PASSWORD)."

    def handle(self, *args, **options):
        if get_user_model().objects.filter(username=USERNAME).exists():
            self.stdout.write(f"Demo counselor {USERNAME} exists; log in at /counselor/.")
            return
        password = os.environ.get("HEARO_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        counselors.counselor_create(username=USERNAME, password=password, display_name="Counselor 1")
        shown = "(from HEARO_DEMO_PASSWORD)" if os.environ.get("HEARO_DEMO_PASSWORD") else password
        self.stdout.write(self.style.SUCCESS(f"Created demo counselor {USERNAME}, password: {shown}"))
