from django.apps import AppConfig
from django.conf import settings


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime push"

    def ready(self) -> None:
        if settings.HEARO_FANOUT == "naive":
            # A benchmark baseline, loaded only when asked for.
            from common import publish
            from realtime.naive_fanout import naive_fanout

            publish.queue_publisher_set(naive_fanout)
