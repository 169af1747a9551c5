"""The abstract history row both status histories share (a visit's, a counselor's)."""

from django.db import models


class StatusEvent(models.Model):
    """One recorded status transition: from what to what, who did it, when, why."""

    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    actor = models.CharField(max_length=80)
    reason = models.CharField(max_length=80, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} → {self.to_status} ({self.reason})"
