from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Counselors and matches"

    def ready(self) -> None:
        from matching import triggers
        from queues import signals

        # A join or a cancel may pair someone: run a pass as soon as it commits.
        signals.queue_changed.connect(triggers.on_queue_changed, dispatch_uid="matching.on_queue_changed")
