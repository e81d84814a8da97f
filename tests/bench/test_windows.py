"""The backfill benchmark's per-window rates (bench/indexer_backfill.py --windows)."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.indexer_backfill import commit_log, window_rates


def test_windows_start_at_the_first_commit_end_with_the_batch_that_completes_them_and_the_last_is_short() -> None:
    # first batch at t=10 (start-up before it is in no window), then 100 events per second
    commits = [(10.0, 50), (11.0, 100), (12.0, 100), (13.0, 100), (14.5, 100), (15.0, 30)]
    assert window_rates(commits, 200) == [(1, 200, 2.0, 100.0), (201, 400, 2.5, 80.0), (401, 430, 0.5, 60.0)]


def test_a_batch_larger_than_a_window_closes_one_window_and_the_next_mark_follows_it() -> None:
    commits = [(0.0, 1), (2.0, 500), (3.0, 100)]
    assert window_rates(commits, 200) == [(1, 500, 2.0, 250.0), (501, 600, 1.0, 100.0)]


def test_no_commits_or_a_single_one_give_no_windows() -> None:
    assert window_rates([], 100) == []
    assert window_rates([(1.0, 1000)], 100) == []


def test_commit_log_keeps_only_batch_commits_with_their_time() -> None:
    got: list[tuple[float, int]] = []
    take = commit_log(got)
    take({"event": "batch_committed", "events": 6000, "timestamp": "2026-11-30T10:00:01.500000Z"})
    take({"event": "backfill_done", "events": 1, "timestamp": "2026-11-30T10:00:02Z"})
    assert got == [(datetime(2026, 11, 30, 10, 0, 1, 500_000, tzinfo=UTC).timestamp(), 6000)]


def test_backfill_done_lines_carry_the_machines_busy_seconds_since_backfill_started() -> None:
    """bench.indexer_limit's CPU floor: the core-seconds between the two lines; none (NaN) when the
    indexer measured does not log backfill_started (an older checkout under --against)."""
    import math

    from bench.indexer_limit import backfill_done

    got: list[dict[str, object]] = []
    take = backfill_done(got)
    take({"event": "backfill_done", "seconds": 1.0})
    take({"event": "backfill_started"})
    take({"event": "batch_committed"})
    take({"event": "backfill_done", "seconds": 2.0})
    assert [d["seconds"] for d in got] == [1.0, 2.0]
    assert math.isnan(float(str(got[0]["machine_cpu"])))
    busy = float(str(got[1]["machine_cpu"]))
    assert math.isfinite(busy)
    assert busy >= 0.0
