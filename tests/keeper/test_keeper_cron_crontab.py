"""Review of 070aabe (keeper.distribute_cron read as crontab(5) reads it, keeper/settings.py crontab_trigger):
the translation fixed day-of-week numbers only. Two more ways a valid crontab still means something else to
APScheduler remain, against crontab_trigger's own docstring ("its day of week read as crontab(5) reads it")
and crontab_days' ("Names mean the same to both and are left as they are")."""

from __future__ import annotations

import datetime as dt

from keeper.settings import ConfigError, check_cron, crontab_trigger

WEDNESDAY = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)  # 2026-12-07 is a Monday


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either() -> None:
    """crontab(5): "If both fields are restricted (i.e., do not contain the '*' character), the command will
    be run when either field matches the current time" — '0 0 1 * 1' is the 1st of each month AND every
    Monday. APScheduler's CronTrigger requires both: the 1st only when it is a Monday (2027-02-01 next)."""
    fire = crontab_trigger("0 0 1 * 1").get_next_fire_time(None, WEDNESDAY)
    assert fire == dt.datetime(2026, 12, 7, tzinfo=dt.UTC), f"'0 0 1 * 1' next fires {fire:%a %Y-%m-%d}"


def test_a_range_of_day_names_starting_on_sunday_is_the_same_days_as_its_numbers() -> None:
    """'sun-wed' is '0-3' by name (Sunday is the first day in crontab); names are passed through unchanged
    and APScheduler numbers sun as 6, so the range is refused at load while '0-3' is accepted."""
    check_cron("0 0 * * 0-3", "keeper.distribute_cron")
    try:
        check_cron("0 0 * * sun-wed", "keeper.distribute_cron")
    except ConfigError as exc:
        raise AssertionError(f"'sun-wed' (= '0-3') refused: {exc}") from None
