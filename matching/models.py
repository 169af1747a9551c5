"""Counselors and the matches that pair them with a waiting registration."""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from common.models import StatusEvent
from queues.models import Queue, Registration


def new_counselor_id() -> str:
    """Return a public counselor id (used in topic names)."""
    return f"counselor_{secrets.token_urlsafe(9)}"


def new_room_name() -> str:
    """Return an unguessable LiveKit room name."""
    return f"hearo_{secrets.token_urlsafe(18)}"


class Counselor(models.Model):
    class Status(models.TextChoices):
        OFFLINE = "OFFLINE"
        AVAILABLE = "AVAILABLE"
        BUSY = "BUSY"
        WRAP_UP = "WRAP_UP"
        AWAY = "AWAY"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="counselor")
    counselor_id = models.CharField(max_length=40, unique=True, default=new_counselor_id, editable=False)
    display_name = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE, db_index=True)
    # When the counselor last became AVAILABLE: the longest-idle one is matched first.
    status_changed_at = models.DateTimeField(auto_now_add=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Skills: the queues and languages this counselor serves (new counselors: the default queue's).
    queues = models.ManyToManyField(Queue, blank=True, related_name="counselors")
    languages = models.JSONField(default=list, blank=True)
    # While WRAP_UP: when the counselor is AVAILABLE again by itself (an indexed deadline the pass filters on).
    wrap_up_until = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return self.display_name or self.user.get_username()

    @property
    def name(self) -> str:
        return self.display_name or self.user.get_username()

    @property
    def identity(self) -> str:
        """Return the counselor's LiveKit identity (distinct from any customer's)."""
        return f"counselor-{self.counselor_id}"


class Match(models.Model):
    registration = models.ForeignKey(Registration, on_delete=models.PROTECT, related_name="matches")
    counselor = models.ForeignKey(Counselor, on_delete=models.PROTECT, related_name="matches")
    room_name = models.CharField(max_length=60, unique=True, default=new_room_name)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    customer_joined_at = models.DateTimeField(null=True, blank=True)
    counselor_joined_at = models.DateTimeField(null=True, blank=True)
    # A deadline in an indexed column the sweep filters on (join timeout).
    join_deadline = models.DateTimeField(db_index=True)
    # The last call-failed reason each side reported: it tried to join, so it is never a no-show.
    customer_failure = models.CharField(max_length=20, blank=True)
    counselor_failure = models.CharField(max_length=20, blank=True)
    # A call one side left (LiveKit participant_left): who, and until when it may come
    # back before the match ends as call_dropped (an indexed deadline the pass filters on).
    interrupted_side = models.CharField(max_length=10, blank=True)
    reconnect_until = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        verbose_name_plural = "matches"
        constraints = [
            # The database itself refuses a counselor holding two customers...
            models.UniqueConstraint(
                fields=["counselor"], condition=Q(ended_at__isnull=True), name="one_open_match_per_counselor"
            ),
            # ...and a registration in two open matches.
            models.UniqueConstraint(
                fields=["registration"], condition=Q(ended_at__isnull=True), name="one_open_match_per_registration"
            ),
        ]

    def __str__(self) -> str:
        return f"match {self.pk} ({self.room_name})"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def tried(self, side: str) -> bool:
        """Return whether ``side`` tried to join: it joined, or reported that its call failed."""
        return getattr(self, f"{side}_joined_at") is not None or bool(getattr(self, f"{side}_failure"))

    @property
    def talked(self) -> bool:
        """Return whether a call took place (both sides joined)."""
        return self.customer_joined_at is not None and self.counselor_joined_at is not None

    @property
    def customer_identity(self) -> str:
        return self.registration.customer.identity

    @property
    def counselor_identity(self) -> str:
        return self.counselor.identity


class CounselorEvent(StatusEvent):
    """One recorded transition of a counselor's status: who, what, when, why."""

    counselor = models.ForeignKey(Counselor, on_delete=models.CASCADE, related_name="events")


class MatchEvent(models.Model):
    match = models.ForeignKey(Match, on_delete=models.CASCADE, related_name="events")
    what = models.CharField(max_length=40)
    actor = models.CharField(max_length=80)
    # Words a person gave for this step (a counselor's reason for a release).
    note = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return self.what
