"""Timer schedules as Azure Functions writes them: six-field NCRONTAB or a TimeSpan.

NCRONTAB fields: ``second minute hour day month day-of-week``, each ``*``, a
number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of
those; months and weekdays also by three-letter name. Day and day-of-week
must both match. A TimeSpan ``hh:mm:ss`` fires every that long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_NAMES = ["second", "minute", "hour", "day", "month", "day-of-week"]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


class ScheduleError(ValueError):
    """The schedule expression is not valid NCRONTAB or TimeSpan."""


def _value(token: str, field: int) -> int:
    lowered = token.lower()
    if field == 4 and lowered in _MONTHS:
        return _MONTHS.index(lowered) + 1
    if field == 5 and lowered in _DAYS:
        return _DAYS.index(lowered)
    if not token.isdigit():
        raise ScheduleError(f"{_NAMES[field]} field: {token!r} is not a number")
    value = int(token)
    low, high = _BOUNDS[field]
    if field == 5 and value == 7:
        value = 0  # Sunday as 7
    if not low <= value <= high:
        raise ScheduleError(f"{_NAMES[field]} field: {value} is outside {low}-{high}")
    return value


def _field(expr: str, field: int) -> frozenset[int]:
    low, high = _BOUNDS[field]
    values: set[int] = set()
    for part in expr.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ScheduleError(f"{_NAMES[field]} field: bad step in {part!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (_value(t, field) for t in base.split("-", 1))
        else:
            start = _value(base, field)
            end = high if step else start
        if start > end:
            raise ScheduleError(f"{_NAMES[field]} field: range {base!r} runs backwards")
        values.update(range(start, end + 1, step or 1))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; :meth:`next_after` gives the next firing time."""

    expression: str
    fields: tuple[frozenset[int], ...] | None = None
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        span = _TIMESPAN.match(expression.strip())
        if span:
            days, hours, minutes, seconds = (int(g) if g else 0 for g in span.groups())
            interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            if interval <= timedelta(0):
                raise ScheduleError(f"TimeSpan {expression!r} must be positive")
            return cls(expression, interval=interval)
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(f"NCRONTAB {expression!r} needs 6 fields (second minute hour day month day-of-week)")
        return cls(expression, fields=tuple(_field(p, i) for i, p in enumerate(parts)))

    def next_after(self, now: datetime) -> datetime:
        """The first firing time strictly after ``now`` (same timezone as ``now``)."""
        if self.interval is not None:
            return now + self.interval
        assert self.fields is not None
        seconds, minutes, hours, days, months, weekdays = self.fields
        start = now.replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(366 * 8):
            if day.month in months and day.day in days and (day.isoweekday() % 7) in weekdays:
                for hour in sorted(hours):
                    for minute in sorted(minutes):
                        for second in sorted(seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate >= start:
                                return candidate
            day += timedelta(days=1)
        raise ScheduleError(f"schedule {self.expression!r} never fires")
