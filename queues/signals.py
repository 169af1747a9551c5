"""Signals the queue sends after commit, for apps that must react (the matcher).

The queue app knows nothing of matching; matching connects here in its
AppConfig.ready and runs a matcher pass when a customer joins or leaves.
"""

from django.dispatch import Signal

# Sent after commit when a customer joined or left the queue; kwargs: reason.
queue_changed = Signal()
