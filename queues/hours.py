"""Opening hours of a queue (pure: no database, no I/O; the clock is an argument).

``hours`` is None (open around the clock) or a list of
``{"day": 0-6 (Monday = 0), "opens": "HH:MM", "closes": "HH:MM"}``; a
``closes`` earlier than ``opens`` runs past midnight into the next day, and
``closes == opens`` means the whole day. Times are wall-clock times in the
queue's timezone. A date in ``closed_dates`` ("YYYY-MM-DD", the queue's
timezone) cancels the intervals that *open* on that date, so a night line
that opens on the 24th at 22:00 still runs to its close on the 25th.
"""

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
# How far ahead the next opening is searched: a week of hours and a run of closed dates.
LOOKAHEAD_DAYS = 60


class HoursError(ValueError):
    """A malformed hours list, closed date or timezone; the message names the entry."""


def parse_hhmm(value: object) -> time:
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise HoursError(f"expected HH:MM (00:00-23:59), got {value!r}")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def validate_hours(hours: object) -> list[dict] | None:
    """Return the hours list normalised, or raise HoursError."""
    if hours is None:
        return None
    if not isinstance(hours, list):
        raise HoursError("hours must be null or a list of {day, opens, closes}")
    clean = []
    for index, entry in enumerate(hours):
        if not isinstance(entry, dict) or set(entry) != {"day", "opens", "closes"}:
            raise HoursError(f"hours[{index}] must have exactly day, opens and closes")
        day = entry["day"]
        if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
            raise HoursError(f"hours[{index}].day must be 0 (Monday) to 6 (Sunday)")
        try:
            parse_hhmm(entry["opens"])
            parse_hhmm(entry["closes"])
        except HoursError as exc:
            raise HoursError(f"hours[{index}]: {exc}") from None
        clean.append({"day": day, "opens": entry["opens"], "closes": entry["closes"]})
    return clean


def validate_closed_dates(dates: object) -> list[str]:
    if not isinstance(dates, list):
        raise HoursError("closedDates must be a list of YYYY-MM-DD")
    for value in dates:
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            date.fromisoformat(value)
        except ValueError:
            raise HoursError(f"closedDates: {value!r} is not YYYY-MM-DD") from None
    return sorted(set(dates))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(f"unknown timezone {name!r}") from None


def _intervals(
    hours: list[dict], closed: set[str], tz: ZoneInfo, first: date, days: int
) -> Iterator[tuple[datetime, datetime]]:
    """Yield the opening intervals that open on ``first`` and the ``days`` after it, in time order."""
    for offset in range(days):
        day = first + timedelta(days=offset)
        if day.isoformat() in closed:
            continue
        todays = sorted((parse_hhmm(h["opens"]), parse_hhmm(h["closes"])) for h in hours if h["day"] == day.weekday())
        for opens, closes in todays:
            start = datetime.combine(day, opens, tzinfo=tz)
            end_day = day if closes > opens else day + timedelta(days=1)
            yield start, datetime.combine(end_day, closes, tzinfo=tz)


def _utc(now: datetime) -> datetime:
    """Return ``now`` in UTC, so comparisons with the queue's local times are by instant.

    Python compares two datetimes of the *same* tzinfo by wall clock alone; a
    ``now`` given in the queue's own zone in the repeated hour of a
    daylight-saving fall-back would be taken for the other of the two instants.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


def _around(hours: list[dict], closed: Iterable[str], tz: ZoneInfo, now: datetime, days: int):
    local = now.astimezone(tz)
    # An interval that opened yesterday may still be running past midnight.
    return _intervals(hours, set(closed), tz, local.date() - timedelta(days=1), days + 1)


def is_open(*, hours: list[dict] | None, closed_dates: Iterable[str], tz_name: str, now: datetime) -> bool:
    """Return whether the queue is open at ``now`` (an aware datetime)."""
    tz, now = zone(tz_name), _utc(now)
    closed = list(closed_dates)
    if hours is None:
        return now.astimezone(tz).date().isoformat() not in closed
    return any(start <= now < end for start, end in _around(hours, closed, tz, now, 1))


def next_opening(
    *, hours: list[dict] | None, closed_dates: Iterable[str], tz_name: str, now: datetime
) -> datetime | None:
    """Return when the queue next opens after ``now`` (UTC), or None if it never does within the lookahead."""
    tz, now = zone(tz_name), _utc(now)
    closed = list(closed_dates)
    if hours is None:
        local = now.astimezone(tz).date()
        for offset in range(1, LOOKAHEAD_DAYS):
            day = local + timedelta(days=offset)
            if day.isoformat() not in closed:
                return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
        return None
    for start, _end in _around(hours, closed, tz, now, LOOKAHEAD_DAYS):
        if start > now:
            return start.astimezone(UTC)
    return None
