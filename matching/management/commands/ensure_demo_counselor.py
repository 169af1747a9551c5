"""Create the demo users of ``make run``: the counselor ``counselor1`` and the staff user ``supervisor``.

Both take ``HEARO_DEMO_PASSWORD``. When it is set, a demo user that already
exists gets it again (so the password in the environment is always the one
that works); when it is not, an existing user keeps its password and a new
one gets a random password, printed once.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from matching import counselors

COUNSELOR = "counselor1"
SUPERVISOR = "supervisor"
# What the supervisor may do in the admin: configure queues and counselors,
# read the visits and matches. Not a superuser: no users, groups or tokens.
SUPERVISOR_PERMISSIONS = (
    ("queues", "add_queue"),
    ("queues", "change_queue"),
    ("queues", "delete_queue"),
    ("queues", "view_queue"),
    ("queues", "view_registration"),
    ("queues", "view_customer"),
    ("matching", "add_counselor"),
    ("matching", "change_counselor"),
    ("matching", "view_counselor"),
    ("matching", "view_match"),
)


def supervisor_permissions() -> list[Permission]:
    """Return the supervisor's permissions (a renamed model fails here, loudly, rather than leave it powerless)."""
    return [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in SUPERVISOR_PERMISSIONS
    ]


class Command(BaseCommand):
    help = (
        "Create the demo counselor counselor1 and the staff user supervisor unless they exist "
        "(password from HEARO_DEMO_PASSWORD, which also resets an existing one's)."
    )

    def handle(self, *args, **options):
        given = os.environ.get("HEARO_DEMO_PASSWORD") or None
        password = given or secrets.token_urlsafe(12)
        shown = "(from HEARO_DEMO_PASSWORD)" if given else password
        base = f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}"
        with transaction.atomic():
            counselor_line = self.counselor(given, password, shown)
            supervisor_line = self.supervisor(given, password, shown)
        self.stdout.write(self.style.SUCCESS(counselor_line))
        self.stdout.write(f"    the counselor dashboard: {base}/counselor/")
        self.stdout.write(self.style.SUCCESS(supervisor_line))
        self.stdout.write(
            f"    the admin site (queues, counselors): {base}/admin/ · the staff API: {base}/api/admin/queues"
        )

    def counselor(self, given: str | None, password: str, shown: str) -> str:
        user = get_user_model().objects.filter(username=COUNSELOR).first()
        if user is None:
            counselors.counselor_create(username=COUNSELOR, password=password, display_name="Counselor 1")
            return f"Created demo counselor {COUNSELOR}, password: {shown}"
        return self.existing(user, given, "demo counselor")

    def supervisor(self, given: str | None, password: str, shown: str) -> str:
        user = get_user_model().objects.filter(username=SUPERVISOR).first()
        created = user is None
        if created:
            user = get_user_model().objects.create_user(username=SUPERVISOR, password=password)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user.user_permissions.add(*supervisor_permissions())
        if created:
            return f"Created demo supervisor {SUPERVISOR} (staff), password: {shown}"
        return self.existing(user, given, "demo supervisor")

    def existing(self, user, given: str | None, what: str) -> str:
        if given is None:
            return f"The {what} {user.username} exists; its password is unchanged (HEARO_DEMO_PASSWORD is not set)."
        user.set_password(given)
        user.save(update_fields=["password"])
        return f"The {what} {user.username} exists; password reset to HEARO_DEMO_PASSWORD."
