"""The waiting queue: customers, their visits (registrations) and the history."""

import secrets

from django.db import models
from django.db.models import Q

from common.models import StatusEvent


def new_customer_id() -> str:
    """Return a public, unguessable customer id."""
    return f"customer_{secrets.token_urlsafe(12)}"


class Customer(models.Model):
    customer_id = models.CharField(max_length=40, unique=True, default=new_customer_id, editable=False)
    display_name = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.display_name or self.customer_id

    @property
    def identity(self) -> str:
        """Return the customer's LiveKit identity (distinct from any counselor's)."""
        return f"customer-{self.customer_id}"


DEFAULT_QUEUE_ID = "general"
# The queue a join without queueId goes to; created by migration 0004 (and again
# by ``queue_default`` if a flushed test database lost it).
DEFAULT_QUEUE = {"name_ko": "일반 상담", "name_en": "General counseling", "languages": ["ko", "en"]}


def default_languages() -> list[str]:
    return ["ko", "en"]


class Queue(models.Model):
    """A topic line (``general``, ``youth``, ``crisis``): who it serves, when, and how many may wait."""

    # The public id (`queueId`) is the key, so `registration.queue_id` is that slug with no join.
    queue_id = models.SlugField(max_length=40, primary_key=True)
    name_ko = models.CharField(max_length=80)
    name_en = models.CharField(max_length=80)
    # Language codes served, in order of preference: a join without a language takes the first.
    languages = models.JSONField(default=default_languages)
    timezone = models.CharField(max_length=64, default="Asia/Seoul")
    # None: open around the clock; else a list of {day: 0-6 (Monday = 0), opens: "HH:MM", closes: "HH:MM"}.
    hours = models.JSONField(null=True, blank=True, default=None)
    closed_dates = models.JSONField(default=list, blank=True)
    max_waiting = models.PositiveIntegerField(null=True, blank=True)
    overflow_queue = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    overflow_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    urgent_head_start_seconds = models.PositiveIntegerField(default=600)
    wrap_up_seconds = models.PositiveIntegerField(default=60)
    # Where to turn when closed or full: [{label: {ko, en}, phone?, url?}].
    alternatives = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "queue_id"]

    def __str__(self) -> str:
        return self.queue_id

    def name_in(self, language: str) -> str:
        return self.name_en if language == "en" else self.name_ko


class Registration(models.Model):
    """One visit of a customer to the waiting room."""

    class Status(models.TextChoices):
        WAITING = "WAITING"
        MATCHED = "MATCHED"
        IN_CALL = "IN_CALL"
        COMPLETED = "COMPLETED"
        CANCELLED = "CANCELLED"
        EXPIRED = "EXPIRED"

    ACTIVE = (Status.WAITING, Status.MATCHED, Status.IN_CALL)
    TERMINAL = (Status.COMPLETED, Status.CANCELLED, Status.EXPIRED)

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="registrations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="registrations")
    language = models.CharField(max_length=10)
    urgent = models.BooleanField(default=False)
    # When the customer joined.
    enqueued_at = models.DateTimeField()
    # Rank order is (virtual_arrival, id) within (queue, language): the join time,
    # less the queue's head start if urgent. Kept by a requeue and by an overflow.
    virtual_arrival = models.DateTimeField()
    # Since when the visit waits in its current queue (overflow counts from here).
    queue_since = models.DateTimeField()
    matched_at = models.DateTimeField(null=True, blank=True)
    in_call_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    left_reason = models.CharField(max_length=40, blank=True)
    # sha256 of the bearer token; the token itself is never stored.
    token_hash = models.CharField(max_length=64, unique=True)
    # A copy of the Redis lease, written at most every lease/2 so a Redis
    # restart does not expire everyone; the sweep filters on it.
    lease_expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(status__in=["WAITING", "MATCHED", "IN_CALL"]),
                name="one_active_registration_per_customer",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "enqueued_at", "id"], name="registration_queue_order"),
            models.Index(
                fields=["queue", "status", "language", "virtual_arrival", "id"], name="registration_line_order"
            ),
        ]

    def __str__(self) -> str:
        return f"registration {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class QueueState(models.Model):
    """A single row whose version goes up with every change to the queue order.

    Every transaction that changes who is WAITING bumps it, so concurrent
    changes are serialised on this row and each published rank set carries a
    version a client can use to drop stale messages.
    """

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"queue version {self.version}"


class RegistrationEvent(StatusEvent):
    """One recorded transition of a registration: who, what, when, why."""

    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="events")
