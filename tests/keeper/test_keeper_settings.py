"""[keeper] values that pass the type check but would break the daemon are refused at load, with the
key, what was expected and what was given (no services needed)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from core.config import ConfigError
from keeper.settings import KeeperSettings
from tests.keeper.kit import run_keeper, write_config


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 25 * * *", "higher than the maximum value (23)"),
        ("0 0 * * 8", "days are 0-7 (0 or 7 = Sunday)"),
        ("0 0 * * mon-fry", "day of week 'mon-fry'"),
        ("0 0 31 2 *", "does not fire within a year"),
        ("0 0 * *", "must have 5 fields"),
    ],
)
def test_a_distribute_cron_that_apscheduler_refuses_or_that_never_fires_is_refused_at_load(
    cron: str, says: str
) -> None:
    """Typos refused by APScheduler and a date that never comes are ConfigErrors naming the key and the form."""
    with pytest.raises(ConfigError) as err:
        KeeperSettings(distribute_cron=cron)
    assert str(err.value).startswith("keeper.distribute_cron")
    assert says in str(err.value)
    assert "'0 0 * * *'" in str(err.value)


def test_a_cron_that_fires_within_a_year_is_accepted() -> None:
    """Daily, every five minutes, and yearly on 1 January all pass."""
    from keeper.settings import check_cron

    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    for cron in ("0 0 * * *", "*/5 * * * *", "0 0 1 1 *"):
        check_cron(cron, "keeper.distribute_cron", now)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("leader_poll_s", 0.0),
        ("leader_poll_s", -1.0),
        ("track_interval_s", 0.0),
        ("confirmations", -1),
        ("gas_margin_pct", -10),
        ("max_consecutive_failures", 0),
        ("record_batch", 0),
        ("rpc_batch_size", 0),
        ("base_fee_multiplier_pct", 50),
        ("fee_history_blocks", 0),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(key: str, value: float) -> None:
    """A zero poll (a busy loop), negative confirmations (confirmed at first sight), a negative gas margin…"""
    with pytest.raises(ConfigError, match=rf"^keeper\.{key} must be"):
        KeeperSettings(**{key: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["max_in_flight", "check_concurrency"])
def test_keys_that_were_never_used_are_gone(key: str) -> None:
    """max_in_flight and check_concurrency were accepted and documented but did nothing: removed."""
    assert key not in KeeperSettings.__dataclass_fields__


def test_run_once_with_a_bad_cron_exits_2_naming_the_key(tmp_path: Path) -> None:
    """The pre-flight `run --once` (which never schedules the cron) refuses it too, before any connection."""
    cfg = write_config(
        tmp_path / "k.toml",
        "http://127.0.0.1:1",
        "postgresql://x@127.0.0.1:1/x",
        tmp_path / "d.json",
        distribute_cron="0 25 * * *",
    )
    r = run_keeper(cfg, "run", "--once", timeout=60)
    assert r.returncode == 2
    assert "keeper.distribute_cron" in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("resolve_interval_s", 10**15),
        ("aggregate_interval_s", 10**14),
        ("warm_interval_s", 10**15),
        ("notify_interval_s", 10**14),
        ("resolve_interval_s", 0),
        ("job_timeout_s", 1e12),
        ("db_statement_timeout_s", 1e12),
        ("db_lock_timeout_s", 1e9),
        ("replace_after_blocks", 0),
        ("fee_percentile", 101),
    ],
)
def test_huge_intervals_and_timeouts_are_refused_at_load(key: str, value: float) -> None:
    """Review h6 (low): 10**15 s intervals passed the `> 0` check and then crashed the daemon with OverflowError
    in APScheduler's IntervalTrigger after it had connected; every numeric key now has an upper bound."""
    with pytest.raises(ConfigError, match=rf"^keeper\.{key} must be within .*GL_KEEPER__{key.upper()}"):
        KeeperSettings(**{key: value})  # type: ignore[arg-type]


def test_every_numeric_keeper_key_has_bounds() -> None:
    """The class of review h6's finding: a numeric [keeper] key added later gets a row in BOUNDS (http_port is
    checked by check_port)."""
    from keeper.settings import BOUNDS

    numeric = {
        f.name
        for f in dataclasses.fields(KeeperSettings)
        if f.type in ("int", "float", int, float) and f.name != "http_port"
    }
    assert numeric == {name for name, _low, _high in BOUNDS}
    defaults = KeeperSettings()
    for name, low, high in BOUNDS:
        assert low <= getattr(defaults, name) <= high, name


@pytest.mark.pg
@pytest.mark.anvil
@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GL_KEEPER__RESOLVE_INTERVAL_S": str(10**15)}, "keeper.resolve_interval_s"),
        ({"GL_KEEPER__NOTIFY_INTERVAL_S": str(10**14)}, "keeper.notify_interval_s"),
    ],
)
def test_the_daemon_exits_2_naming_a_huge_interval(
    tmp_path: Path, db_dsn: str, deployment_path: Path, chain: object, env: dict[str, str], key: str
) -> None:
    """From the environment too: exit 2 with the key, never a traceback after connecting."""
    cfg = write_config(tmp_path / "k.toml", chain.url, db_dsn, deployment_path)  # type: ignore[attr-defined]
    r = run_keeper(cfg, "run", env=env, timeout=90)
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    assert r.returncode == 2
    assert key in out
