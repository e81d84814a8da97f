"""Review hg of d9d1f58 (crontab_trigger: "when both day fields are restricted, a firing on either", an
OrTrigger): crontab(5) counts a field as restricted only when it has no '*' (cron reads a field starting with
'*' as DOM_STAR / DOW_STAR and then needs BOTH fields to match). crontab_trigger tests `dom != "*"`, so
`*/2` in day-of-month is taken as restricted: '0 0 */2 * mon' (crontab: odd days that are Mondays) now fires
on every odd day and every Monday - distributions about 4x as often as the operator's schedule says."""

from __future__ import annotations

import datetime as dt

from keeper.settings import crontab_trigger


def test_a_stepped_star_day_of_month_is_not_restricted() -> None:
    trigger = crontab_trigger("0 0 */2 * mon")
    fire = trigger.get_next_fire_time(None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    fires: list[dt.datetime] = []
    while fire is not None and len(fires) < 8:
        fires.append(fire)
        fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    wrong = [f.date().isoformat() for f in fires if f.weekday() != 0 or f.day % 2 != 1]
    assert wrong == [], f"crontab(5) runs '0 0 */2 * mon' on odd days that are Mondays only; fired on {wrong}"
