"""Concurrent matchers against real PostgreSQL: never a double assignment."""

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from matching import handoff, matcher
from matching.models import Counselor, Match
from queues import leases
from queues import services as queue_services
from queues.models import Registration, RegistrationEvent
from tests.queues.test_concurrency import race

S = Registration.Status
C = Counselor.Status
ROUNDS = 200
COUNSELORS = 4


def round_reset(counselors: list[Counselor], available: int) -> None:
    """End every open match and visit; put ``available`` counselors on shift, the rest AWAY."""
    now = timezone.now()
    Match.objects.filter(ended_at__isnull=True).update(ended_at=now, end_reason="test_reset")
    Registration.objects.filter(status__in=Registration.ACTIVE).update(status=S.CANCELLED, ended_at=now)
    for i, counselor in enumerate(counselors):
        status = C.AVAILABLE if i < available else C.AWAY
        lease = now + timedelta(seconds=60)
        Counselor.objects.filter(pk=counselor.pk).update(status=status, status_changed_at=now, lease_expires_at=lease)
        leases.lease_renew("counselor", counselor.id)


def assert_no_double_assignment() -> None:
    open_matches = Match.objects.filter(ended_at__isnull=True)
    for side in ("counselor", "registration"):
        doubled = open_matches.values(side).annotate(n=Count("id")).filter(n__gt=1)
        assert not doubled.exists(), f"a {side} in two open matches: {list(doubled)}"
    matched = Registration.objects.filter(status=S.MATCHED)
    assert matched.count() == open_matches.count()
    assert set(matched.values_list("id", flat=True)) == set(open_matches.values_list("registration_id", flat=True))
    busy = set(Counselor.objects.filter(status=C.BUSY).values_list("id", flat=True))
    assert busy == set(open_matches.values_list("counselor_id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_concurrent_matchers_never_assign_anyone_twice(postgres, on_shift, published):
    rng = random.Random(4)  # a fixed seed: a failure replays
    counselors = [on_shift(name=f"racer{i}") for i in range(COUNSELORS)]
    made = 0
    for round_no in range(ROUNDS):
        available, customers, matchers = rng.randint(1, COUNSELORS), rng.randint(1, 6), rng.randint(2, 4)
        round_reset(counselors, available)
        visits = [queue_services.registration_join().registration for _ in range(customers)]
        published.clear()

        results = race(matchers, matcher.match_pass)

        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, f"round {round_no}: {errors}"
        expected = min(available, customers)
        paired = [match_id for result in results for match_id in result.matched]
        assert len(paired) == len(set(paired)) == expected, f"round {round_no}: {results}"
        assert_no_double_assignment()
        # the earliest customers were the ones paired
        assert set(Match.objects.filter(id__in=paired).values_list("registration_id", flat=True)) == {
            v.id for v in visits[:expected]
        }
        told = Counter(m["body"]["status"] for g, m in published if g.startswith("customer.") and "body" in m)
        assert told["MATCHED"] == expected, f"round {round_no}: {published}"
        made += expected
    assert RegistrationEvent.objects.filter(to_status=S.MATCHED).count() == made


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_timeout_ends_the_match_exactly_once(postgres, on_shift, settings):
    settings.HEARO_JOIN_TIMEOUT_SECONDS = 1
    counselor = on_shift()
    for _ in range(20):
        round_reset([counselor], available=1)
        visit = queue_services.registration_join().registration
        matcher.match_pass()
        later = timezone.now() + timedelta(seconds=5)
        results = race(
            2,
            [
                lambda v=visit: handoff.visit_cancel(registration=Registration.objects.get(pk=v.pk)),
                lambda when=later: matcher.match_pass(now=when),
            ],
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        match = Match.objects.get(registration=visit)
        visit.refresh_from_db()
        assert match.end_reason in ("customer_cancelled", "counselor_no_show")
        assert match.events.filter(what__startswith="ended").count() == 1
        # whoever won, the customer ends up cancelled (a requeue is cancelled on the retry)
        assert visit.status == S.CANCELLED
        assert_no_double_assignment()
