"""Review of 070aabe (last_distribution_due looks back up to a year): each window is walked forward from its
start, firing by firing, with one get_next_fire_time per firing. A schedule that fires often but not in the
last month walks every firing of the whole year window; last_distribution_due runs on the event loop (the
distribute job's period, every catch-up), blocking the leader's heartbeat meanwhile. Before 070aabe this was
one call (and a wrong None)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from keeper.daemon import Daemon
from tests.keeper.kit import make_settings


class Counting:
    def __init__(self, trigger: Any) -> None:
        self.trigger, self.calls = trigger, 0

    def get_next_fire_time(self, previous: Any, now: Any) -> Any:
        self.calls += 1
        return self.trigger.get_next_fire_time(previous, now)


def test_the_year_look_back_does_not_walk_every_firing_of_the_year(tmp_path: Path) -> None:
    cron = "* * * 1 *"  # every minute of January (valid: check_cron accepts it)
    d = Daemon(
        make_settings("http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", distribute_cron=cron),
        dry_run=True,
    )
    counting = Counting(d.distribute_trigger)
    d.distribute_trigger = counting  # type: ignore[assignment]
    last = d.last_distribution_due(dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC))
    assert last == dt.datetime(2026, 1, 31, 23, 59, tzinfo=dt.UTC)
    assert counting.calls <= 1_000, f"{counting.calls} get_next_fire_time calls for one last_distribution_due"
