"""Routing in the matcher and the public reads: skills, the longest-idle counselor, overflow, estimates."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common import events
from matching import counselors, matcher
from matching.models import Counselor, Match
from matching.selectors import wait_stats_forget
from queues import services
from queues.models import Queue, Registration, RegistrationEvent
from queues.services import queue_default
from tests.conftest import bearer
from tests.support.routing import at, joined, line, rank, skills

pytestmark = pytest.mark.django_db
S = Registration.Status
C = Counselor.Status


def pairs() -> set[tuple[int, int]]:
    """(registration id, counselor id) of every open match."""
    return set(Match.objects.filter(ended_at__isnull=True).values_list("registration_id", "counselor_id"))


def idle_since(counselor: Counselor, seconds_ago: float) -> None:
    """Say the counselor became AVAILABLE that long ago (the longest idle goes first)."""
    when = timezone.now() - timedelta(seconds=seconds_ago)
    Counselor.objects.filter(pk=counselor.pk).update(status_changed_at=when)


def status(counselor: Counselor) -> str:
    counselor.refresh_from_db()
    return counselor.status


def run_pass(capture, **kwargs) -> matcher.MatchPassResult:
    with capture(execute=True):
        return matcher.match_pass(**kwargs)


# --- skills --------------------------------------------------------------------------------


def test_a_youth_only_counselor_never_gets_a_general_customer(on_shift):
    line("youth", languages=["ko"])
    youth_desk = skills(on_shift(), queues=["youth"], languages=["ko"])
    general = [joined(s) for s in (0, 10, 20)]
    assert matcher.match_pass().matched == []
    assert status(youth_desk) == C.AVAILABLE
    assert [rank(r) for r in general] == [1, 2, 3]

    teenager = joined(500, queue_id="youth")  # long after every general customer
    assert len(matcher.match_pass().matched) == 1
    assert pairs() == {(teenager.id, youth_desk.id)}


def test_a_korean_only_counselor_never_gets_an_english_customer(on_shift):
    first, second = (skills(on_shift(), queues=["general"], languages=["ko"]) for _ in range(2))
    english = joined(0, language="en")
    korean = joined(100, language="ko")
    matcher.match_pass()
    assert pairs() == {(korean.id, first.id)}
    assert status(second) == C.AVAILABLE  # free, yet the English customer still waits
    assert matcher.match_pass().matched == []
    assert rank(english) == 1


def test_a_counselor_who_serves_no_queue_gets_nobody(on_shift):
    desk = on_shift()
    desk.queues.clear()
    joined(0)
    assert matcher.match_pass().matched == []


def test_a_counselor_of_several_queues_takes_the_earliest_virtual_arrival_across_them(on_shift):
    line("youth", languages=["ko"])
    desk = skills(on_shift(), queues=["general", "youth"], languages=["ko"])
    joined(300)
    urgent_teenager = joined(800, queue_id="youth", urgent=True)  # virtual arrival 200: earlier than 300
    matcher.match_pass()
    assert pairs() == {(urgent_teenager.id, desk.id)}


# --- the longest-idle counselor first ------------------------------------------------------


def test_the_counselor_idle_longest_gets_the_customer(on_shift):
    a, b, c = on_shift(), on_shift(), on_shift()
    for desk, seconds in ((a, 100), (b, 300), (c, 200)):
        idle_since(desk, seconds)
    customer = joined(0)
    matcher.match_pass()
    assert pairs() == {(customer.id, b.id)}
    assert (status(a), status(b), status(c)) == (C.AVAILABLE, C.BUSY, C.AVAILABLE)


def test_the_longest_idle_counselors_go_first_each_with_the_earliest_customer(on_shift):
    desks = [on_shift() for _ in range(3)]
    for desk, seconds in zip(desks, (10, 30, 20), strict=True):
        idle_since(desk, seconds)
    first, second = joined(0), joined(1)
    matcher.match_pass()
    assert pairs() == {(first.id, desks[1].id), (second.id, desks[2].id)}


def test_a_longest_idle_counselor_who_serves_nobody_waiting_does_not_hold_up_the_next(on_shift):
    line("youth", languages=["ko"])
    youth_desk = skills(on_shift(), queues=["youth"], languages=["ko"])
    general_desk = on_shift()
    idle_since(youth_desk, 600)
    idle_since(general_desk, 10)
    customer = joined(0)
    matcher.match_pass()
    assert pairs() == {(customer.id, general_desk.id)}
    assert status(youth_desk) == C.AVAILABLE


def test_the_longest_idle_picks_first_and_the_next_takes_what_it_can_serve(on_shift):
    line("youth", languages=["ko"])
    general_only = on_shift()
    both = skills(on_shift(), queues=["general", "youth"], languages=["ko"])
    idle_since(general_only, 300)
    idle_since(both, 100)
    teenager = joined(0, queue_id="youth")  # the earliest, but the longest idle cannot take it
    adult = joined(100)
    matcher.match_pass()
    assert pairs() == {(adult.id, general_only.id), (teenager.id, both.id)}


def test_no_pass_ever_pairs_outside_a_counselors_skills(on_shift):
    line("youth", languages=["ko", "en"])
    desks = {
        "youth ko": skills(on_shift(), queues=["youth"], languages=["ko"]),
        "general en": skills(on_shift(), queues=["general"], languages=["en"]),
        "general ko": skills(on_shift(), queues=["general"], languages=["ko"]),
    }
    for s in range(0, 12):
        joined(s, queue_id="youth" if s % 2 else None, language="en" if s % 3 else "ko")
    matcher.match_pass()
    served = {desk.id: name for name, desk in desks.items()}
    made = Match.objects.select_related("registration").all()
    assert len(made) == 3
    for match in made:
        queue = match.registration.queue_id
        assert served[match.counselor_id] == f"{queue} {match.registration.language}"


# --- what the counselor and the customer are told ------------------------------------------


def test_match_assigned_says_the_queue_the_language_and_the_urgency(
    on_shift, published, django_capture_on_commit_callbacks
):
    line("youth", languages=["ko", "en"])
    desk = skills(on_shift(), queues=["youth"], languages=["en"])
    customer = joined(0, queue_id="youth", language="en", urgent=True)
    published.clear()
    run_pass(django_capture_on_commit_callbacks)
    told_desk = published.bodies(events.counselor_group(desk.counselor_id))
    (assigned,) = [b for b in told_desk if b.get("type") == "MATCH_ASSIGNED"]
    assert (assigned["queueId"], assigned["language"], assigned["urgent"]) == ("youth", "en", True)
    (told,) = published.bodies(events.customer_group(customer.customer.customer_id))
    assert (told["status"], told["queueId"]) == ("MATCHED", "youth")


def test_the_rest_rank_carries_the_queue_and_the_estimate(api, on_shift, settings):
    settings.HEARO_DEFAULT_HANDLE_SECONDS = 420
    line("youth", languages=["ko", "en"])
    first = services.registration_join(queue_id="youth", language="en")
    second = services.registration_join(queue_id="youth", language="en")
    state = api.get("/api/queue/rank", **bearer(second.token)).json()
    assert (state["status"], state["queueId"], state["rank"]) == ("WAITING", "youth", 2)
    assert state["estimatedWaitSeconds"] is None
    assert state["estimatedWaitReason"] == "no_counselor_online"

    desk = skills(on_shift(C.AWAY), queues=["youth"], languages=["en"])
    counselors.counselor_set_status(counselor=desk, status=C.AVAILABLE)
    wait_stats_forget()
    state = api.get("/api/queue/rank", **bearer(second.token)).json()
    assert (state["queueId"], state["rank"], state["estimatedWaitSeconds"]) == ("youth", 2, 2 * 420)
    assert "estimatedWaitReason" not in state
    assert api.get("/api/queue/rank", **bearer(first.token)).json()["estimatedWaitSeconds"] == 420


# --- overflow --------------------------------------------------------------------------------


def youth_overflowing_to_general(after: int = 900, **fields):
    return line("youth", overflow_queue=queue_default(), overflow_after_seconds=after, **fields)


def test_a_customer_still_waiting_after_overflow_after_seconds_moves_keeping_its_place_in_time(
    published, django_capture_on_commit_callbacks
):
    youth_overflowing_to_general(after=900)
    g1, g2, g3 = joined(0), joined(200), joined(400)
    teenager = joined(100, queue_id="youth")

    assert run_pass(django_capture_on_commit_callbacks, now=at(999)).overflowed == []  # 899 s: not yet
    teenager.refresh_from_db()
    assert teenager.queue_id == "youth"

    published.clear()
    result = run_pass(django_capture_on_commit_callbacks, now=at(1000))

    assert result.overflowed == [teenager.id]
    teenager.refresh_from_db()
    assert (teenager.queue_id, teenager.language, teenager.status) == ("general", "ko", S.WAITING)
    assert (teenager.virtual_arrival, teenager.enqueued_at, teenager.queue_since) == (at(100), at(100), at(1000))
    # Joined at 100: behind the one who came at 0, ahead of those who came at 200 and 400.
    assert [rank(r) for r in (g1, teenager, g2, g3)] == [1, 2, 3, 4]
    (told,) = published.bodies(events.customer_group(teenager.customer.customer_id))
    assert (told["status"], told["queueId"], told["rank"], told["reason"]) == ("WAITING", "general", 2, "overflow")
    assert "estimatedWaitSeconds" in told
    assert told["seq"] == RegistrationEvent.objects.filter(registration=teenager).latest("id").id
    history = teenager.events.order_by("id").last()
    assert (history.from_status, history.to_status, history.reason) == ("WAITING", "WAITING", "overflow")
    (change,) = published.bodies(events.QUEUE_GROUP)
    assert (sorted(change["queues"]), change["reason"]) == (["general", "youth"], "overflow")


def test_an_urgent_customer_keeps_its_head_start_when_it_overflows(django_capture_on_commit_callbacks):
    youth_overflowing_to_general(after=60)
    g1, g2 = joined(0), joined(300)
    urgent = joined(800, queue_id="youth", urgent=True)  # virtual arrival 200
    matcher.match_pass(now=at(900))
    assert [rank(r) for r in (g1, urgent, g2)] == [1, 2, 3]


def test_overflow_time_counts_from_when_the_customer_entered_its_current_queue():
    general = queue_default()
    adult = line("adult", languages=["ko"])
    general.overflow_queue, general.overflow_after_seconds = adult, 600
    general.save()
    youth_overflowing_to_general(after=300)
    old_general = joined(0)
    teenager = joined(0, queue_id="youth")
    matcher.match_pass(now=at(400))  # the teenager moves to general, the adult has waited only 400 s
    teenager.refresh_from_db()
    old_general.refresh_from_db()
    assert (teenager.queue_id, old_general.queue_id) == ("general", "general")
    matcher.match_pass(now=at(700))  # 700 s in general for one, 300 s for the other
    teenager.refresh_from_db()
    old_general.refresh_from_db()
    assert (teenager.queue_id, old_general.queue_id) == ("general", "adult")


def test_a_customer_whose_language_the_other_queue_does_not_serve_stays_in_its_line():
    line("adult", languages=["ko"])
    line("youth", languages=["ko", "en"], overflow_queue_id="adult", overflow_after_seconds=60)
    english, korean = joined(0, queue_id="youth", language="en"), joined(10, queue_id="youth", language="ko")
    assert matcher.match_pass(now=at(100)).overflowed == [korean.id]
    english.refresh_from_db()
    assert (english.queue_id, english.language, rank(english)) == ("youth", "en", 1)


def test_nobody_overflows_into_a_closed_queue_until_it_opens():
    line("adult", languages=["ko"], hours=[])  # closed for good
    line("youth", languages=["ko"], overflow_queue_id="adult", overflow_after_seconds=60)
    teenager = joined(0, queue_id="youth")
    assert matcher.match_pass(now=at(100)).overflowed == []
    teenager.refresh_from_db()
    assert teenager.queue_id == "youth"
    Queue.objects.filter(pk="adult").update(hours=None)
    assert matcher.match_pass(now=at(200)).overflowed == [teenager.id]


def test_overflow_fills_a_capped_queue_only_up_to_its_cap_earliest_first():
    line("adult", languages=["ko"], max_waiting=2)
    line("youth", languages=["ko"], overflow_queue_id="adult", overflow_after_seconds=60)
    joined(0, queue_id="adult")
    first, second = joined(10, queue_id="youth"), joined(20, queue_id="youth")
    assert matcher.match_pass(now=at(100)).overflowed == [first.id]
    second.refresh_from_db()
    assert second.queue_id == "youth"
    assert matcher.match_pass(now=at(200)).overflowed == []  # adult is full now


def test_an_overflowed_customer_can_be_matched_in_the_same_pass(
    on_shift, published, django_capture_on_commit_callbacks
):
    youth_overflowing_to_general(after=60)
    desk = on_shift()  # serves general only
    teenager = joined(0, queue_id="youth")
    published.clear()
    result = run_pass(django_capture_on_commit_callbacks, now=at(100))
    assert result.overflowed == [teenager.id] and len(result.matched) == 1
    assert pairs() == {(teenager.id, desk.id)}
    told = published.bodies(events.customer_group(teenager.customer.customer_id))
    assert [(b["status"], b["queueId"]) for b in told] == [("MATCHED", "general")]  # no stale rank after it


def test_a_queue_without_an_overflow_rule_keeps_its_customers_however_long_they_wait():
    line("youth")
    teenager = joined(0, queue_id="youth")
    assert matcher.match_pass(now=at(86_400)).overflowed == []
    teenager.refresh_from_db()
    assert teenager.queue_id == "youth"


# --- GET /api/queues ---------------------------------------------------------------------------


PUBLIC_FIELDS = {"queueId", "name", "languages", "open", "accepting", "opensAt", "waiting", "estimatedWaitSeconds"}


def queues_seen(api, **headers) -> dict[str, dict]:
    wait_stats_forget()
    response = api.get("/api/queues", **headers)
    assert response.status_code == 200, response.content
    return {item["queueId"]: item for item in response.json()}


def test_the_queue_list_is_public_and_names_each_queue_in_the_requests_language(api):
    line("youth", languages=["ko"], name_ko="청소년 상담", name_en="Youth counseling")
    in_english = queues_seen(api, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    in_korean = queues_seen(api, HTTP_ACCEPT_LANGUAGE="ko")
    assert list(in_english) == ["general", "youth"]  # the default queue first
    assert (in_english["youth"]["name"], in_korean["youth"]["name"]) == ("Youth counseling", "청소년 상담")
    assert (in_english["general"]["name"], in_korean["general"]["name"]) == ("General counseling", "일반 상담")
    for item in in_english.values():
        assert PUBLIC_FIELDS <= set(item)
    assert in_english["youth"]["languages"] == ["ko"]
    # Public: no login, and a stray credential is neither needed nor checked.
    assert api.get("/api/queues", HTTP_AUTHORIZATION="Token not-a-real-one").status_code == 200


def test_a_closed_queue_is_listed_as_not_accepting_with_its_opening_and_no_estimate(api, on_shift):
    line("night", hours=[{"day": d, "opens": "00:00", "closes": "00:00"} for d in range(7)])  # always open
    line("never", hours=[])
    line("holiday", closed_dates=[timezone.localdate().isoformat(), (timezone.localdate() + timedelta(1)).isoformat()])
    for queue_id in ("night", "never", "holiday"):
        skills(on_shift(), queues=[queue_id], languages=["ko"])
    seen = queues_seen(api)
    assert (seen["night"]["open"], seen["night"]["accepting"], seen["night"]["opensAt"]) == (True, True, None)
    assert seen["night"]["estimatedWaitSeconds"] is not None
    for closed in ("never", "holiday"):
        assert (seen[closed]["open"], seen[closed]["accepting"]) == (False, False)
        assert seen[closed]["estimatedWaitSeconds"] is None
        assert seen[closed]["estimatedWaitReason"] == "closed"
    assert seen["never"]["opensAt"] is None
    assert seen["holiday"]["opensAt"] > events.epoch_ms(timezone.now() + timedelta(days=1))


def test_a_full_queue_is_open_but_not_accepting(api):
    line("youth", max_waiting=2)
    joined(0, queue_id="youth")
    seen = queues_seen(api)
    assert (seen["youth"]["open"], seen["youth"]["accepting"], seen["youth"]["waiting"]) == (True, True, 1)
    joined(1, queue_id="youth")
    seen = queues_seen(api)
    assert (seen["youth"]["open"], seen["youth"]["accepting"], seen["youth"]["waiting"]) == (True, False, 2)


def test_nobody_serving_a_line_makes_its_estimate_null_with_a_reason(api, on_shift):
    line("youth", languages=["ko", "en"])
    skills(on_shift(), queues=["youth"], languages=["en"])  # the English line only
    on_shift(C.AWAY)  # away counselors do not count
    seen = queues_seen(api)
    assert seen["youth"]["estimatedWaitSeconds"] is None  # the first language, Korean, has nobody
    assert seen["youth"]["estimatedWaitReason"] == "no_counselor_online"
    lines = {entry["language"]: entry for entry in seen["youth"]["lines"]}
    assert lines["ko"]["estimatedWaitReason"] == "no_counselor_online"
    assert lines["en"]["estimatedWaitSeconds"] is not None
    assert seen["general"]["estimatedWaitReason"] == "no_counselor_online"


def test_with_no_call_history_the_estimate_uses_the_default_handle_time(api, on_shift, settings):
    settings.HEARO_DEFAULT_HANDLE_SECONDS = 420
    line("youth", languages=["ko"])
    skills(on_shift(C.AWAY), queues=["youth"], languages=["ko"])
    desks = [skills(on_shift(C.AWAY), queues=["general", "youth"], languages=["ko"]) for _ in range(2)]
    joined(0), joined(1), joined(2, queue_id="youth")
    for desk in desks:
        counselors.counselor_set_status(counselor=desk, status=C.AVAILABLE)
    seen = queues_seen(api)
    # general: two counselors, someone joining now is 3rd: ceil(3 / 2) rounds of the default.
    assert (seen["general"]["waiting"], seen["general"]["estimatedWaitSeconds"]) == (2, 2 * 420)
    # youth: the same two counselors (the third is away), 2nd in line: one round.
    assert (seen["youth"]["waiting"], seen["youth"]["estimatedWaitSeconds"]) == (1, 420)


def test_a_counselor_of_several_queues_counts_once_in_each_line(api, on_shift, settings):
    settings.HEARO_DEFAULT_HANDLE_SECONDS = 420
    line("youth", languages=["ko"])
    line("crisis", languages=["ko"])
    skills(on_shift(), queues=["general", "youth", "crisis"], languages=["ko"])
    joined(0)
    seen = queues_seen(api)
    assert seen["general"]["estimatedWaitSeconds"] == 2 * 420  # one counselor, 2nd in line: two rounds
    assert seen["youth"]["estimatedWaitSeconds"] == seen["crisis"]["estimatedWaitSeconds"] == 420


def test_busy_and_wrapping_up_counselors_still_serve_the_line(api, on_shift, settings):
    settings.HEARO_DEFAULT_HANDLE_SECONDS = 420
    desk = on_shift()
    joined(0)
    matcher.match_pass()
    assert status(desk) == C.BUSY
    assert queues_seen(api)["general"]["estimatedWaitSeconds"] == 420
    Match.objects.update(ended_at=timezone.now())
    desk.refresh_from_db()
    counselors.counselor_free(counselor=desk, actor="test", reason="test", wrap_up_seconds=60)
    assert queues_seen(api)["general"]["estimatedWaitSeconds"] == 420


def test_the_listed_waiting_count_and_the_cap_agree_after_a_language_is_dropped(api):
    youth = line("youth", languages=["ko", "en"], max_waiting=2)
    joined(0, queue_id="youth", language="en")
    joined(1, queue_id="youth", language="en")
    youth.languages = ["ko"]  # staff stop taking English; the two still wait and are still served
    youth.save()
    seen = queues_seen(api)
    assert (seen["youth"]["waiting"], seen["youth"]["accepting"]) == (2, False)
    response = api.post("/api/queue/join", {"queueId": "youth"}, format="json")
    assert response.json()["error"] == "queue_full"
