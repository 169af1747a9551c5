"""Routing in the waiting queue: the order by virtual arrival, urgent joins, refusals that create nothing."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db.models import Count

from common import events
from common.errors import Conflict
from queues import selectors, services
from queues.models import Customer, Queue, Registration, RegistrationEvent
from tests.conftest import bearer
from tests.queues.test_concurrency import race
from tests.support.routing import at, frozen_clock, joined, line, rank

pytestmark = pytest.mark.django_db
S = Registration.Status
ALTERNATIVES = [{"label": {"ko": "자살예방상담전화", "en": "Suicide prevention line"}, "phone": "109"}]


def ranks(*registrations: Registration) -> list[int | None]:
    return [rank(r) for r in registrations]


# --- the order: virtual arrival, then id, within one queue and language ---------------------


def test_ranks_follow_the_time_of_arrival_not_the_order_the_rows_were_written():
    late = joined(300)
    early = joined(100)
    middle = joined(200)
    assert ranks(early, middle, late) == [1, 2, 3]


def test_equal_virtual_arrivals_are_ordered_by_id():
    first, second = joined(100), joined(100)
    assert first.id < second.id
    assert ranks(first, second) == [1, 2]


def test_each_queue_and_language_is_a_line_of_its_own():
    line("youth", languages=["ko", "en"])
    visits = {
        "general ko 1": joined(10),
        "youth ko 1": joined(20, queue_id="youth"),
        "general en 1": joined(30, language="en"),
        "general ko 2": joined(40),
        "youth en 1": joined(50, queue_id="youth", language="en"),
        "youth ko 2": joined(60, queue_id="youth"),
        "general en 2": joined(70, language="en"),
    }
    assert {name: rank(r) for name, r in visits.items()} == {name: int(name[-1]) for name in visits}


def test_the_hub_read_and_the_rest_rank_agree_line_by_line():
    line("youth", languages=["ko", "en"])
    visits = [joined(s, queue_id=q, language=lang) for s, q, lang in _mixed_joins()]
    visits.append(joined(900, queue_id="youth", urgent=True))
    order = selectors.queue_order()
    from_hub = {reg_id: i for ids in order.lines.values() for i, reg_id in enumerate(ids, start=1)}
    assert from_hub == {r.id: rank(r) for r in visits}
    assert set(order.lines) == {("general", "ko"), ("general", "en"), ("youth", "ko"), ("youth", "en")}


def test_the_hubs_one_statement_read_on_postgresql_is_the_orm_read(postgres):
    line("youth", languages=["ko", "en"])
    line("quiet")
    visits = [joined(s, queue_id=q, language=lang) for s, q, lang in _mixed_joins()]
    visits.append(joined(900, queue_id="youth", urgent=True))
    services.registration_cancel(registration=visits[3])
    for read in (None, frozenset({"youth"}), frozenset({"youth", "quiet", "general"}), frozenset({"quiet"})):
        grouped, rows = selectors._queue_order_grouped(read), selectors._queue_order_rows(read)
        assert grouped == rows
        assert list(grouped.lines) == list(rows.lines)  # the same lines in the same order
    assert sum(map(len, selectors.queue_order().lines.values())) == len(visits) - 1  # all but the cancelled


def _mixed_joins() -> list[tuple[int, str | None, str | None]]:
    return [(s, ("youth" if s % 3 else None), ("en" if s % 2 else "ko")) for s in range(0, 600, 37)]


def test_a_line_closes_up_after_a_cancel_but_the_other_lines_do_not_move():
    a, b, c = joined(1), joined(2), joined(3)
    en = joined(4, language="en")
    services.registration_cancel(registration=a)
    assert ranks(b, c, en) == [1, 2, 1]


# --- urgent: a head start of urgentHeadStartSeconds, no more -----------------------------------


def test_an_urgent_join_ranks_ahead_of_customers_who_joined_less_than_the_head_start_earlier():
    recent = [joined(300), joined(500), joined(790)]  # 500, 300 and 10 seconds before the urgent join
    urgent = joined(800, urgent=True)  # the default head start: 600 s
    assert urgent.virtual_arrival == at(200)
    assert rank(urgent) == 1
    assert ranks(*recent) == [2, 3, 4]


def test_an_urgent_join_ranks_behind_customers_who_joined_earlier_than_the_head_start():
    long_waiting = [joined(0), joined(100)]  # 800 and 700 seconds before the urgent join
    recent = joined(500)
    urgent = joined(800, urgent=True)
    assert ranks(*long_waiting, urgent, recent) == [1, 2, 3, 4]


def test_an_urgent_join_exactly_the_head_start_later_ranks_behind():
    normal = joined(200)
    urgent = joined(800, urgent=True)  # the same virtual arrival; the earlier id goes first
    assert ranks(normal, urgent) == [1, 2]


def test_the_head_start_is_the_queues_own():
    line("crisis", urgent_head_start_seconds=60)
    before = joined(700, queue_id="crisis")  # 100 s earlier: more than this queue's head start
    after = joined(750, queue_id="crisis")  # 50 s earlier: less
    urgent = joined(800, queue_id="crisis", urgent=True)
    assert urgent.urgent and urgent.virtual_arrival == at(740)
    assert ranks(before, urgent, after) == [1, 2, 3]


def test_a_later_urgent_join_does_not_overtake_an_earlier_urgent_one():
    first = joined(0, urgent=True)
    joined(100)
    second = joined(500, urgent=True)
    assert ranks(first, second) == [1, 2]


def test_an_urgent_join_in_one_line_moves_nobody_in_another():
    line("youth")
    ko, en, youth = joined(700), joined(700, language="en"), joined(700, queue_id="youth")
    joined(800, urgent=True)
    assert ranks(ko, en, youth) == [2, 1, 1]


def test_an_urgent_join_tells_the_hubs_which_queue_and_why(published, django_capture_on_commit_callbacks):
    line("youth")
    with django_capture_on_commit_callbacks(execute=True):
        joined(0, queue_id="youth", urgent=True)
        joined(1, queue_id="youth")
    broadcasts = published.bodies(events.QUEUE_GROUP)
    assert [(b["queues"], b["reason"]) for b in broadcasts] == [(["youth"], "urgent_joined"), (["youth"], "joined")]


# --- refusals create nothing -------------------------------------------------------------------


def written() -> tuple[int, int, int, int]:
    """Customers, visits, history rows and the queue version: what a join writes."""
    counts = (Customer.objects.count(), Registration.objects.count(), RegistrationEvent.objects.count())
    return (*counts, selectors.queue_version())


def post_join(api, body: dict, published, capture, **headers):
    before = written()
    published.clear()
    with capture(execute=True):
        response = api.post("/api/queue/join", body, format="json", **headers)
    assert written() == before, "a refused join wrote something"
    assert published == [], "a refused join published something"
    return response


def test_a_closed_queue_refuses_with_its_next_opening_and_alternatives_and_creates_nothing(
    api, published, django_capture_on_commit_callbacks, monkeypatch
):
    frozen_clock(monkeypatch, at(0))
    line("holiday", closed_dates=[at(0).date().isoformat()], timezone="UTC", alternatives=ALTERNATIVES)
    response = post_join(api, {"queueId": "holiday", "urgent": True}, published, django_capture_on_commit_callbacks)
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "queue_closed" and body["detail"]
    assert body["alternatives"] == ALTERNATIVES
    # Around the clock but for today (UTC): it opens at the next midnight.
    midnight = datetime.combine(at(0).date() + timedelta(days=1), time.min, tzinfo=UTC)
    assert body["opensAt"] == events.epoch_ms(midnight)


def test_a_closed_queue_with_no_opening_ahead_says_opens_at_null(api, published, django_capture_on_commit_callbacks):
    line("retired", hours=[])
    response = post_join(api, {"queueId": "retired"}, published, django_capture_on_commit_callbacks)
    assert (response.status_code, response.json()["error"], response.json()["opensAt"]) == (409, "queue_closed", None)


def test_a_full_queue_refuses_with_alternatives_and_creates_nothing(api, published, django_capture_on_commit_callbacks):
    line("youth", max_waiting=2, alternatives=ALTERNATIVES)
    joined(0, queue_id="youth")
    joined(1, queue_id="youth")
    response = post_join(api, {"queueId": "youth"}, published, django_capture_on_commit_callbacks)
    assert response.status_code == 409
    assert response.json() == {
        "error": "queue_full",
        "detail": response.json()["detail"],
        "alternatives": ALTERNATIVES,
    }
    assert response.json()["detail"]


def test_a_full_queue_counts_every_language_and_only_those_still_waiting(api, join):
    line("youth", languages=["ko", "en"], max_waiting=2)
    first = joined(0, queue_id="youth")
    joined(1, queue_id="youth", language="en")
    with pytest.raises(Conflict) as refused:
        services.registration_join(queue_id="youth", urgent=True)  # urgency does not get past the cap
    assert refused.value.code == "queue_full"
    services.registration_cancel(registration=first)
    assert services.registration_join(queue_id="youth").created
    assert join()["queueId"] == "general"  # other queues have no cap


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"queueId": "nosuchline"}, "unknown_queue"),
        ({"queueId": "youth", "language": "en"}, "unsupported_language"),
        ({"language": "ja"}, "unsupported_language"),
    ],
)
def test_an_unknown_queue_or_a_language_it_does_not_serve_is_a_400_that_creates_nothing(
    api, published, django_capture_on_commit_callbacks, body, error
):
    line("youth", languages=["ko"])
    response = post_join(api, body, published, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["detail"]


def test_a_returning_customer_refused_by_a_full_queue_keeps_everything_as_it_was(
    api, join, published, django_capture_on_commit_callbacks
):
    first = join("Mina")
    api.post("/api/queue/cancel", **bearer(first["token"]))
    line("youth", max_waiting=1)
    joined(0, queue_id="youth")
    response = post_join(
        api,
        {"displayName": "Someone else", "queueId": "youth"},
        published,
        django_capture_on_commit_callbacks,
        **bearer(first["token"]),
    )
    assert response.json()["error"] == "queue_full"
    assert Customer.objects.get(customer_id=first["customerId"]).display_name == "Mina"


# --- the join body -----------------------------------------------------------------------------


@pytest.fixture
def join_to(api, django_capture_on_commit_callbacks):
    """Join through the API with this body; return the 201 (or 200) body."""

    def _join_to(**body):
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/queue/join", body, format="json")
        assert response.status_code in (200, 201), response.content
        return response.json()

    return _join_to


def test_the_join_body_says_which_queue_language_and_urgency(join_to, monkeypatch):
    line("youth", languages=["ko", "en"])
    joined(0, queue_id="youth", language="en")
    frozen_clock(monkeypatch, at(60))  # the API's join comes a minute later, not whenever the suite runs
    body = join_to(queueId="youth", language="en", urgent=True)
    assert (body["queueId"], body["language"], body["urgent"], body["status"]) == ("youth", "en", True, "WAITING")
    assert body["rank"] == 1  # a customer who joined moments ago is well within the head start
    registration = Registration.objects.get(pk=body["registrationId"])
    assert (registration.queue_id, registration.language, registration.urgent) == ("youth", "en", True)


def test_a_join_without_a_language_takes_the_queues_first(join_to):
    line("english", languages=["en", "ko"])
    assert join_to(queueId="english")["language"] == "en"


def test_a_join_without_a_queue_goes_to_the_general_queue_exactly_as_before(join):
    bodies = [join(f"guest{i}") for i in range(3)]
    assert [(b["queueId"], b["language"], b["urgent"], b["rank"]) for b in bodies] == [
        ("general", "ko", False, 1),
        ("general", "ko", False, 2),
        ("general", "ko", False, 3),
    ]
    again = join(token=bodies[0]["token"])  # an active visit is returned, not a second one
    assert again["registrationId"] == bodies[0]["registrationId"]
    registration = Registration.objects.get(pk=bodies[2]["registrationId"])
    assert registration.virtual_arrival == registration.enqueued_at == registration.queue_since


def test_a_join_without_a_queue_recreates_a_lost_default_queue(join):
    Queue.objects.filter(pk="general").delete()
    assert join()["queueId"] == "general"
    assert Queue.objects.get(pk="general").languages == ["ko", "en"]


# --- the cap holds under concurrent joins (PostgreSQL) ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_joins_never_fill_a_queue_past_its_cap(postgres):
    line("youth", max_waiting=3)
    for round_no in range(5):
        Registration.objects.filter(status=S.WAITING).update(status=S.CANCELLED)
        results = race(8, lambda: services.registration_join(queue_id="youth"))
        refused = [r for r in results if isinstance(r, Conflict)]
        assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)], results
        assert {r.code for r in refused} == {"queue_full"}, f"round {round_no}: {results}"
        assert len(refused) == 5, f"round {round_no}"
        waiting = Registration.objects.filter(status=S.WAITING).values("queue_id").annotate(n=Count("id"))
        assert list(waiting) == [{"queue_id": "youth", "n": 3}]
