"""Celery tasks of the matcher: stable names, no arguments (STYLE habit 11)."""

from celery import shared_task

from matching import services


@shared_task(name="matching.match_pass", ignore_result=True)
def match_pass_task() -> None:
    """Run one matcher pass (from the beat, or triggered by an event)."""
    services.match_pass()
