"""The Celery app: Redis broker from REDIS_URL (or the sentinels), tasks discovered in the apps."""

import logging
import os

from celery import Celery
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hearo.settings")

log = logging.getLogger(__name__)

app = Celery("hearo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _restore_unacked_unless_gone(self, client=None):
    """Restore a channel's prefetched messages, unless its connection is already gone.

    kombu 5.7's Redis transport (and its Sentinel channel) restores them while
    closing a channel whose broker connection broke, through a transport whose
    client ``close()`` has already let go: AttributeError on ``hostname``, and
    the worker exits ("Unrecoverable error"). Found by the soak's Sentinel
    failover. Skipping is safe: the messages stay in kombu's unacked index, from
    which ``restore_visible`` returns them to the queue after the visibility
    timeout, and the worker reconnects to the promoted primary as usual.
    """
    if getattr(self.channel.connection, "client", None) is None:
        log.warning("broker connection gone; %d prefetched message(s) left to redelivery", len(self._delivered))
        return None
    return _restore_unacked(self, client)


_restore_unacked = kombu_redis.QoS.restore_unacked
kombu_redis.QoS.restore_unacked = _restore_unacked_unless_gone
