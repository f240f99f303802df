from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triggers.localhost.schedule import Schedule, ScheduleError

NOW = datetime(2026, 11, 27, 18, 30, 15, 500_000, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */1 * * * *", datetime(2026, 11, 27, 18, 31, 0, tzinfo=UTC)),
        ("*/5 * * * * *", datetime(2026, 11, 27, 18, 30, 20, tzinfo=UTC)),
        ("0 0 9 * * Mon-Fri", datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)),
        ("0 0 0 1 Jan *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("30 15 18 * * *", datetime(2026, 11, 28, 18, 15, 30, tzinfo=UTC)),
        ("0 0,30 * * * *", datetime(2026, 11, 27, 19, 0, 0, tzinfo=UTC)),
        ("0 0 12 29 2 *", datetime(2028, 2, 29, 12, 0, 0, tzinfo=UTC)),
        ("0 0 0 * * 7", datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_firing_time(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(NOW) == expected


def test_next_is_strictly_after_now() -> None:
    exact = datetime(2026, 11, 27, 18, 31, 0, tzinfo=UTC)
    assert Schedule.parse("0 * * * * *").next_after(exact) == exact + timedelta(minutes=1)


def test_timespan() -> None:
    assert Schedule.parse("00:05:00").next_after(NOW) == NOW + timedelta(minutes=5)
    assert Schedule.parse("1.00:00:00").next_after(NOW) == NOW + timedelta(days=1)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * * *", "needs 6 fields"),
        ("61 * * * * *", "second field: 61 is outside 0-59"),
        ("0 0 25 * * *", "hour field: 25"),
        ("0 0 0 * Foo *", "month field: 'Foo' is not a number"),
        ("0 0 0 5-1 * *", "runs backwards"),
        ("*/0 * * * * *", "bad step"),
        ("00:00:00", "must be positive"),
        ("0 0 0 31 2 *", "never fires"),
    ],
)
def test_bad_schedules_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(expression).next_after(NOW)
