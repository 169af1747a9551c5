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
    # Rank order is (enqueued_at, id); a requeue after a counselor no-show keeps it.
    enqueued_at = models.DateTimeField()
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
