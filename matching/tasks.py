"""Celery tasks of the matcher: stable names, plain arguments (STYLE habit 11)."""

from celery import shared_task

from matching import matcher


@shared_task(name="matching.match_pass", ignore_result=True)
def match_pass_task(scheduled: bool = False) -> None:
    """Run one matcher pass: the beat's (``scheduled=True``), or one an event triggered.

    Only the beat's stamps readiness, so /readyz notices a dead beat even
    while event-driven passes keep matching.
    """
    if scheduled:
        matcher.match_pass_periodic()
    else:
        matcher.match_pass()
