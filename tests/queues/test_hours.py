"""Opening hours: pure tests with fixed instants, then a join at a frozen clock through the service and the API."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from common import events
from common.errors import Conflict
from queues import hours, selectors, services
from queues.models import Customer, Queue, Registration, RegistrationEvent
from tests.support.routing import frozen_clock, line

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = range(7)


def seoul(*args) -> datetime:
    return datetime(*args, tzinfo=SEOUL)


def night_line(days=EVERY_DAY) -> list[dict]:
    """22:00 to 02:00 the next morning."""
    return [{"day": day, "opens": "22:00", "closes": "02:00"} for day in days]


def is_open(when: datetime, *, hours_list, closed=(), tz="Asia/Seoul") -> bool:
    return hours.is_open(hours=hours_list, closed_dates=closed, tz_name=tz, now=when)


def next_opening(when: datetime, *, hours_list, closed=(), tz="Asia/Seoul") -> datetime | None:
    return hours.next_opening(hours=hours_list, closed_dates=closed, tz_name=tz, now=when)


# --- pure: across midnight ---------------------------------------------------------------


def test_a_night_line_opened_on_friday_runs_past_midnight_into_saturday():
    friday_only = night_line(days=[4])  # 2026-12-04 is a Friday
    assert is_open(seoul(2026, 12, 4, 23, 30), hours_list=friday_only)
    assert is_open(seoul(2026, 12, 5, 1, 59), hours_list=friday_only)  # Saturday, no Saturday hours of its own
    assert not is_open(seoul(2026, 12, 5, 2, 0), hours_list=friday_only)  # the close is exclusive
    assert not is_open(seoul(2026, 12, 4, 21, 59), hours_list=friday_only)
    assert is_open(seoul(2026, 12, 4, 22, 0), hours_list=friday_only)  # the opening is inclusive
    # Friday's small hours belong to Thursday's night, which this line does not have.
    assert not is_open(seoul(2026, 12, 4, 1, 0), hours_list=friday_only)


def test_a_closing_at_midnight_runs_to_the_end_of_the_day():
    evening = [{"day": 0, "opens": "18:00", "closes": "00:00"}]  # Monday
    assert is_open(seoul(2026, 12, 7, 23, 59), hours_list=evening)
    assert not is_open(seoul(2026, 12, 8, 0, 0), hours_list=evening)


def test_the_same_opening_and_closing_time_means_the_whole_day():
    monday = [{"day": 0, "opens": "00:00", "closes": "00:00"}]
    assert is_open(seoul(2026, 12, 7, 0, 0), hours_list=monday)
    assert is_open(seoul(2026, 12, 7, 23, 59), hours_list=monday)
    assert not is_open(seoul(2026, 12, 8, 0, 0), hours_list=monday)


def test_the_next_opening_of_a_night_line_is_tonight_in_utc():
    opens = next_opening(seoul(2026, 12, 5, 2, 0), hours_list=night_line())
    assert opens == datetime(2026, 12, 5, 13, 0, tzinfo=UTC)  # 22:00 in Seoul
    assert opens.tzinfo == UTC


def test_several_intervals_a_day_leave_a_closed_gap_between_them():
    split = [{"day": 0, "opens": "09:00", "closes": "12:00"}, {"day": 0, "opens": "13:00", "closes": "18:00"}]
    assert is_open(seoul(2026, 12, 7, 11, 59), hours_list=split)
    assert not is_open(seoul(2026, 12, 7, 12, 30), hours_list=split)
    assert next_opening(seoul(2026, 12, 7, 12, 30), hours_list=split) == seoul(2026, 12, 7, 13, 0)
    # After the last one of the week, the next Monday.
    assert next_opening(seoul(2026, 12, 7, 18, 0), hours_list=split) == seoul(2026, 12, 14, 9, 0)


# --- pure: the queue's timezone ------------------------------------------------------------


def test_hours_are_wall_clock_times_in_the_queues_timezone():
    office = [{"day": 0, "opens": "09:00", "closes": "18:00"}]  # Mondays
    instant = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # Monday 10:00 in Seoul, Sunday 20:00 in New York
    assert is_open(instant, hours_list=office, tz="Asia/Seoul")
    assert not is_open(instant, hours_list=office, tz="America/New_York")
    assert next_opening(instant, hours_list=office, tz="America/New_York") == datetime(
        2026, 12, 7, 14, 0, tzinfo=UTC
    )  # 09:00 EST


def test_the_opening_follows_the_wall_clock_across_a_daylight_saving_change():
    daily = [{"day": day, "opens": "09:00", "closes": "17:00"} for day in EVERY_DAY]
    tz = "America/New_York"
    # New York moves to EDT on Sunday 2026-03-08: 09:00 is 14:00 UTC the day before, 13:00 UTC that day.
    assert next_opening(datetime(2026, 3, 7, 12, 0, tzinfo=UTC), hours_list=daily, tz=tz) == datetime(
        2026, 3, 7, 14, 0, tzinfo=UTC
    )
    assert next_opening(datetime(2026, 3, 8, 12, 0, tzinfo=UTC), hours_list=daily, tz=tz) == datetime(
        2026, 3, 8, 13, 0, tzinfo=UTC
    )
    assert is_open(datetime(2026, 3, 8, 13, 30, tzinfo=UTC), hours_list=daily, tz=tz)
    assert not is_open(datetime(2026, 3, 7, 13, 30, tzinfo=UTC), hours_list=daily, tz=tz)


def test_an_instant_in_the_repeated_hour_of_a_fall_back_is_judged_by_the_instant_not_the_wall_clock():
    # New York falls back on Sunday 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
    small_hours = [{"day": 6, "opens": "00:00", "closes": "01:45"}]  # closes at 01:45 EDT = 05:45 UTC
    tz = "America/New_York"
    first = datetime(2026, 11, 1, 1, 30, fold=0, tzinfo=NEW_YORK)  # 05:30 UTC
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)  # 06:30 UTC, after the close
    assert is_open(first, hours_list=small_hours, tz=tz)
    assert not is_open(second, hours_list=small_hours, tz=tz)
    # Whatever zone the instant is written in, the answer is the same.
    assert not is_open(second.astimezone(UTC), hours_list=small_hours, tz=tz)
    assert not is_open(second.astimezone(SEOUL), hours_list=small_hours, tz=tz)


def test_a_naive_time_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="aware"):
        is_open(datetime(2026, 12, 7, 12, 0), hours_list=None)


# --- pure: closed dates ------------------------------------------------------------------


def test_a_closed_date_is_a_date_in_the_queues_timezone():
    christmas = ["2026-12-25"]
    # 2026-12-24 15:30 UTC is already the 25th in Seoul, still the 24th in New York.
    instant = datetime(2026, 12, 24, 15, 30, tzinfo=UTC)
    assert not is_open(instant, hours_list=None, closed=christmas, tz="Asia/Seoul")
    assert is_open(instant, hours_list=None, closed=christmas, tz="America/New_York")
    assert is_open(seoul(2026, 12, 24, 23, 59), hours_list=None, closed=christmas)
    # Around the clock otherwise: it opens again at midnight after the closed day.
    assert next_opening(instant, hours_list=None, closed=christmas) == seoul(2026, 12, 26, 0, 0)


def test_a_closed_date_cancels_the_night_that_opens_on_it_not_the_one_running_into_it():
    closed = ["2026-12-25"]
    # The night of the 24th runs into the 25th as usual...
    assert is_open(seoul(2026, 12, 25, 1, 0), hours_list=night_line(), closed=closed)
    # ...but the night of the 25th does not open, nor run into the 26th.
    assert not is_open(seoul(2026, 12, 25, 23, 0), hours_list=night_line(), closed=closed)
    assert not is_open(seoul(2026, 12, 26, 1, 0), hours_list=night_line(), closed=closed)
    assert next_opening(seoul(2026, 12, 25, 2, 0), hours_list=night_line(), closed=closed) == seoul(2026, 12, 26, 22, 0)


def test_the_next_opening_skips_a_run_of_closed_dates():
    daily = [{"day": day, "opens": "09:00", "closes": "18:00"} for day in EVERY_DAY]
    closed = [f"2026-12-{day}" for day in range(24, 32)]
    assert next_opening(seoul(2026, 12, 23, 19, 0), hours_list=daily, closed=closed) == seoul(2027, 1, 1, 9, 0)


def test_a_queue_with_no_hours_at_all_never_opens():
    assert not is_open(seoul(2026, 12, 7, 12, 0), hours_list=[])
    assert next_opening(seoul(2026, 12, 7, 12, 0), hours_list=[]) is None


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ([{"day": 7, "opens": "09:00", "closes": "18:00"}], "hours[0].day"),
        ([{"day": 0, "opens": "24:00", "closes": "18:00"}], "HH:MM"),
        ([{"day": 0, "opens": "9:00", "closes": "18:00"}], "HH:MM"),
        ([{"day": 0, "opens": "09:00"}], "exactly day, opens and closes"),
        ({"day": 0}, "null or a list"),
    ],
)
def test_malformed_hours_are_refused_with_the_entry_named(bad, says):
    with pytest.raises(hours.HoursError, match=says.replace("[", r"\[").replace("]", r"\]")):
        hours.validate_hours(bad)


def test_an_unknown_timezone_is_refused():
    with pytest.raises(hours.HoursError, match="unknown timezone"):
        hours.zone("Mars/Olympus_Mons")


# --- through the service and the API, the clock frozen -------------------------------------


def rows() -> tuple[int, int, int]:
    return Customer.objects.count(), Registration.objects.count(), RegistrationEvent.objects.count()


@pytest.mark.django_db
def test_a_join_at_a_frozen_time_is_let_in_by_night_and_refused_by_day_in_the_queues_timezone():
    line("night", hours=night_line(), timezone="Asia/Seoul")
    small_hours = seoul(2026, 12, 5, 1, 30)
    joined = services.registration_join(queue_id="night", now=small_hours).registration
    assert (joined.queue_id, joined.enqueued_at) == ("night", small_hours)

    before = rows()
    with pytest.raises(Conflict) as refused:
        services.registration_join(queue_id="night", now=seoul(2026, 12, 5, 2, 0))
    assert refused.value.code == "queue_closed"
    assert refused.value.extra["opensAt"] == events.epoch_ms(seoul(2026, 12, 5, 22, 0))
    assert rows() == before


@pytest.mark.django_db
def test_a_join_on_a_closed_date_is_refused_until_midnight_in_the_queues_timezone():
    line("holiday", closed_dates=["2026-12-25"], timezone="America/New_York")
    # Christmas morning in Seoul is still Christmas Eve in New York: open.
    services.registration_join(queue_id="holiday", now=seoul(2026, 12, 25, 9, 0))
    with pytest.raises(Conflict) as refused:
        services.registration_join(queue_id="holiday", now=datetime(2026, 12, 25, 12, 0, tzinfo=NEW_YORK))
    opens = datetime(2026, 12, 26, 0, 0, tzinfo=NEW_YORK)
    assert refused.value.extra["opensAt"] == events.epoch_ms(opens)
    state = selectors.queue_open_state(queue=Queue.objects.get(pk="holiday"), now=opens - timedelta(minutes=1))
    assert not state.open


@pytest.mark.django_db
def test_the_api_refuses_a_night_line_by_day_at_a_frozen_clock(api, monkeypatch):
    clock = frozen_clock(monkeypatch)
    line("night", hours=night_line(), alternatives=[{"label": {"ko": "위기상담", "en": "Crisis line"}, "phone": "109"}])
    clock.set(seoul(2026, 12, 7, 15, 0))
    response = api.post("/api/queue/join", {"queueId": "night"}, format="json")
    assert response.status_code == 409
    assert response.json()["opensAt"] == events.epoch_ms(seoul(2026, 12, 7, 22, 0))
    clock.set(seoul(2026, 12, 7, 22, 0))
    response = api.post("/api/queue/join", {"queueId": "night"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["timestamp"] == events.epoch_ms(seoul(2026, 12, 7, 22, 0))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"closedDates": ["hours"]}, "closedDates"),
        ({"closedDates": "2026-12-25"}, "closedDates"),
        ({"hours": [{"day": 0, "opens": "09:00", "closes": "25:00"}], "closedDates": []}, "hours"),
    ],
)
def test_a_bad_schedule_setting_is_blamed_on_the_setting_that_is_wrong(body, field):
    from queues.config import ConfigError, queue_config_clean

    with pytest.raises(ConfigError) as refused:
        queue_config_clean(body, partial=True)
    assert refused.value.field == field
