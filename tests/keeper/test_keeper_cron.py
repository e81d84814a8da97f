"""Review s20 hk: keeper.distribute_cron, documented as a 5-field cron in UTC, and the periods it makes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from keeper.daemon import Daemon
from keeper.settings import check_cron
from tests.keeper.kit import make_settings

SUNDAY = "2026-12-06T12:00:00"  # 2026-12-07 is a Monday


def _at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)


def _daemon(tmp_path: Path, cron: str) -> Daemon:
    return Daemon(
        make_settings("http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", distribute_cron=cron),
        dry_run=True,
    )


@pytest.mark.parametrize(
    ("cron", "weekday"),
    [("0 0 * * 1", "Mon"), ("0 0 * * 0", "Sun"), ("0 0 * * 5", "Fri")],
)
def test_a_numeric_day_of_week_means_what_it_means_in_crontab(tmp_path: Path, cron: str, weekday: str) -> None:
    """In crontab(5) day-of-week 0 (and 7) is Sunday, 1 Monday … APScheduler 3's CronTrigger.from_crontab passes
    the number through to its own numbering (0 = Monday), so '0 0 * * 1' distributes on Tuesdays and
    '0 0 * * 1-5' Tuesday to Saturday; only the names (mon, sun) are right."""
    d = _daemon(tmp_path, cron)
    fire = d.distribute_trigger.get_next_fire_time(None, _at(SUNDAY))
    assert fire is not None
    assert fire.strftime("%a") == weekday, f"{cron!r} fires on {fire:%a %Y-%m-%d}, crontab says {weekday}"


def test_sunday_as_7_is_accepted_as_in_crontab() -> None:
    """crontab(5): 'day of week 0-7 (0 or 7 is Sunday)'. The keeper refuses '0 0 * * 7' (APScheduler's range is 0-6)."""
    check_cron("0 0 * * 7", "keeper.distribute_cron", _at(SUNDAY))


def test_a_weekly_distribute_cron_keeps_its_period_and_its_catch_up_after_two_days(tmp_path: Path) -> None:
    """keeper.distribute_cron = '0 0 * * mon' (Mondays 00:00 UTC) passes the load check (it fires within a year).
    Daemon.last_distribution_due only looks two days back, so from Wednesday on:
      * it answers None: catch_up() clears the pending catch-up, and a Monday distribution missed during a
        three-day outage is never run (no alert);
      * distribution_period() falls back to the run's own day: a `run --once --jobs distribute` (or a job request)
        on Thursday distributes under a 'Thursday' period key, a second distribution in Monday's week."""
    d = _daemon(tmp_path, "0 0 * * mon")
    assert d.last_distribution_due(_at("2026-12-08T10:00:00")) == _at("2026-12-07T00:00:00")  # Tuesday: fine
    assert d.last_distribution_due(_at("2026-12-10T10:00:00")) == _at("2026-12-07T00:00:00")  # Thursday
    assert d.distribution_period(_at("2026-12-10T10:00:00")) == "2026-12-07"


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0,7", "sun"),
        ("5-7", "fri,sat,sun"),
        ("*/2", "sun,tue,thu,sat"),
        ("1-5/2", "mon,wed,fri"),
        ("6", "sat"),
        ("*", "*"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("sun-wed", "sun,mon,tue,wed"),
        ("fri-sun", "fri,sat,sun"),
        ("mon,3", "mon,wed"),
    ],
)
def test_crontab_day_numbers_become_the_names_apscheduler_reads_as_crontab_does(field: str, names: str) -> None:
    from keeper.settings import crontab_days

    assert crontab_days(field) == names


@pytest.mark.parametrize(
    "cron", ["0 0 * * *", "*/5 * * * *", "30 12 * * 1-5", "0 0 1,15 * *", "0 0 1 * 1", "0 6 * * sun"]
)
@pytest.mark.parametrize(
    "at", ["2026-12-06T12:00:00", "2026-12-07T00:00:00", "2026-12-07T00:00:30", "2027-01-01T06:00:00"]
)
def test_the_last_firing_is_the_one_a_walk_over_every_firing_finds(tmp_path: Path, cron: str, at: str) -> None:
    """last_distribution_due (a bisection) against walking every firing of the last 40 days."""
    d = _daemon(tmp_path, cron)
    now = _at(at)
    fire = d.distribute_trigger.get_next_fire_time(None, now - dt.timedelta(days=40))
    walked = None
    while fire is not None and fire <= now:
        walked = fire
        fire = d.distribute_trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    assert d.last_distribution_due(now) == walked
