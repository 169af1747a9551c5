from django.apps import AppConfig
from django.conf import settings


def match_pass_soon(after: float = 0) -> None:
    """Start a pass where this deployment runs them: this process's loop, or a Celery worker."""
    from matching import inprocess, tasks

    if settings.HEARO_INPROCESS_MATCHER:
        if after:
            inprocess.request_now(after=after)
        else:
            inprocess.request_now()
    else:
        # A triggered run still queued one interval after it was due is stale:
        # the beat has run a pass since, so let the worker drop it.
        options = {"countdown": after} if after else {}
        tasks.match_pass_task.apply_async(expires=after + settings.HEARO_MATCH_INTERVAL_SECONDS, **options)


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Counselors and matches"

    def ready(self) -> None:
        from matching import triggers
        from queues import signals

        triggers.match_pass_runner_set(match_pass_soon)
        # A join or a cancel may pair someone: run a pass as soon as it commits.
        signals.queue_changed.connect(triggers.on_queue_changed, dispatch_uid="matching.on_queue_changed")
