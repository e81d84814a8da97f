"""The keeper's configuration: [keeper] plus the shared [chain], [database], [redis], [services]
sections of one TOML file, read once at start (core.config.section rejects unknown keys by name).

Errors: core.config.ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from core.config import (
    ChainSettings,
    ConfigError,
    DatabaseSettings,
    RedisSettings,
    ServicesSettings,
    check_port,
    load_config,
    section,
)
from core.warm import api_base_url
from keeper.store import DbTimeouts

LOCAL_CHAIN_IDS = (31337, 1337)
MIN_BUMP_BPS = 1_250  # nodes refuse a replacement with less than +12.5 % on both fee fields


WEEK_S = 7 * 86_400
# (key, lowest, highest) for every numeric [keeper] key: values outside these pass the type check but break
# the daemon (a zero poll is a busy loop, negative confirmations confirm at first sight, a negative margin
# under-gasses, an interval of 10**15 s overflows APScheduler after the daemon connected — review h6).
# tests/keeper/test_keeper_settings.py checks that no numeric key is missing here.
BOUNDS: tuple[tuple[str, float, float], ...] = (
    ("resolve_interval_s", 1, WEEK_S),
    ("warm_interval_s", 1, WEEK_S),
    ("aggregate_interval_s", 1, WEEK_S),
    ("notify_interval_s", 1, WEEK_S),
    ("job_timeout_s", 0.1, 86_400),
    ("db_statement_timeout_s", 0.1, 86_400),
    ("db_lock_timeout_s", 0.1, 3_600),
    ("replace_after_blocks", 1, 10_000),
    ("bump_bps", MIN_BUMP_BPS, 100_000),
    ("max_fee_per_gas_cap", 1, 10**30),  # 0: no transaction could ever be priced (review s20 hk)
    ("max_priority_fee_cap", 0, 10**30),
    ("fee_percentile", 0, 100),
    ("dev_anvil_account", -1, 1_000),
    ("track_interval_s", 0.1, 3_600),
    ("leader_poll_s", 0.1, 300),
    ("leader_lease_s", 2, 3_600),
    ("max_consecutive_failures", 1, 10_000),
    ("confirmations", 0, 10_000),
    ("gas_margin_pct", 0, 1_000),
    ("max_gas_limit", 21_000, 10**9),
    ("max_broadcast_refusals", 1, 1_000),
    ("base_fee_multiplier_pct", 100, 10_000),
    ("fee_history_blocks", 1, 1_024),
    ("min_priority_fee", 0, 10**30),
    ("low_balance_wei", 0, 10**30),
    ("grace_period_s", 0, 10**9),
    ("ending_soon_s", 0, 10**9),
    ("feed_max_staleness_s", 1, 10**9),
    ("feed_max_rounds_back", 0, 100_000),
    ("record_batch", 1, 100_000),
    ("rpc_batch_size", 1, 100_000),
    ("leaderboard_size", 1, 100_000),
    ("trending_size", 1, 100_000),
    ("history_days", 1, 36_500),
)
LEASE_POLLS = 3  # leader_lease_s >= this x leader_poll_s
CRON_FORM = "5 fields 'minute hour day-of-month month day-of-week' in UTC, e.g. '0 0 * * *' (daily at 00:00)"


CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab(5): 0 or 7 is Sunday


def _day_number(text: str, part: str) -> int:
    if text.isdigit():
        return int(text)
    if text.lower() in CRON_DAYS:
        return CRON_DAYS.index(text.lower())
    raise ValueError(f"day of week {part!r}: use numbers 0-7 (0 or 7 = Sunday) or names sun-sat")


def crontab_days(field: str) -> str:
    """A crontab day-of-week field as the list of day names it means in crontab(5), which APScheduler reads
    the same way. Its own numbers count from Monday (0 = mon) and its ranges of names from Monday too, so a
    crontab field passed through ran '1-5' Tuesday to Saturday and refused 'sun-wed' (review s20 hk, hf).
    ValueError for a day or range crontab does not have."""
    if field == "*":
        return field
    days: list[str] = []
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else 0 if slash else 1
        first, dash, last = base.partition("-")
        if base == "*":
            lo, hi = 0, 6
        else:
            lo = _day_number(first, part)
            hi = _day_number(last, part) if dash else (7 if slash else lo)
            if dash and hi == 0 and not last.isdigit():  # 'fri-sun': Sunday ends a range as 7
                hi = 7
        if step < 1 or not 0 <= lo <= hi <= 7:
            raise ValueError(f"day of week {part!r}: days are 0-7 (0 or 7 = Sunday), a range low-high, a step >= 1")
        days.extend(CRON_DAYS[d % 7] for d in range(lo, hi + 1, step))
    return ",".join(dict.fromkeys(days))


def crontab_trigger(expr: str) -> BaseTrigger:
    """APScheduler's trigger for a 5-field crontab in UTC, read as crontab(5) reads it: its day-of-week
    numbers and names (crontab_days), and, when both day fields are restricted, a firing on either
    (crontab(5): "the command will be run when either field matches"; APScheduler alone needs both)."""
    fields = expr.split()
    if len(fields) != 5:
        return CronTrigger.from_crontab(expr, timezone=dt.UTC)  # its own error
    minute, hour, dom, month = fields[:4]
    dow = crontab_days(fields[4])
    if not dom.startswith("*") and not fields[4].startswith("*"):  # crontab(5): a field from * is unrestricted
        return OrTrigger(
            [
                CronTrigger.from_crontab(f"{minute} {hour} {dom} {month} *", timezone=dt.UTC),
                CronTrigger.from_crontab(f"{minute} {hour} * {month} {dow}", timezone=dt.UTC),
            ]
        )
    return CronTrigger.from_crontab(f"{minute} {hour} {dom} {month} {dow}", timezone=dt.UTC)


def check_cron(expr: str, key: str, now: dt.datetime | None = None) -> None:
    """ConfigError naming `key` unless `expr` is a crontab APScheduler accepts that fires within a year
    ('0 0 31 2 *' parses and never fires)."""
    if len(expr.split()) != 5:
        raise ConfigError(f"{key} must have {CRON_FORM}; got {expr!r}")
    try:
        trigger = crontab_trigger(expr)
    except ValueError as exc:
        raise ConfigError(f"{key} = {expr!r} is not a valid cron ({exc}); use {CRON_FORM}") from None
    now = now or dt.datetime.now(dt.UTC)
    fire = trigger.get_next_fire_time(None, now)
    if fire is None or fire - now > dt.timedelta(days=366):
        raise ConfigError(
            f"{key} = {expr!r} does not fire within a year (a date that does not exist?); use {CRON_FORM}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class KeeperSettings:
    # ---- signer (docs/keeper.md "Keys")
    signer: str = "keystore"  # keystore | raw (raw needs local_dev_raw_key = true and a local chain)
    keystore: str = ""  # path to a V3 JSON keystore (geth / ape accounts format)
    password_file: str = ""  # file holding the keystore password; else the env var below
    password_env: str = "GL_KEEPER_PASSWORD"
    local_dev_raw_key: bool = False  # explicit opt-in for a raw private key, local chains only
    raw_key_env: str = "GL_KEEPER_RAW_KEY"  # env var holding the raw key (hex)
    dev_anvil_account: int = -1  # >= 0: use anvil's well-known dev account N (local chains only)
    # ---- behaviour
    dry_run: bool = False  # decide and simulate, send nothing, print the plan
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0 = [services].keeper_metrics_port; -1 = no HTTP server
    # ---- schedules (seconds, or a 5-field cron in UTC)
    resolve_interval_s: int = 300  # the resolve (propose), finalize and expire jobs
    distribute_cron: str = "0 0 * * *"
    warm_interval_s: int = 900
    aggregate_interval_s: int = 300
    notify_interval_s: int = 60
    ending_soon_s: int = 3_600  # holders are told once when their market ends within this
    track_interval_s: float = 2.0
    leader_poll_s: float = 5.0
    # PostgreSQL ends a leader's lock session this long after its last query (pause, dead host,
    # partition), which frees the lock for a standby; the leader pings every lease / 4
    leader_lease_s: float = 30.0
    max_consecutive_failures: int = 5  # a job failing this many times in a row halts the daemon
    job_timeout_s: float = 900.0  # one job run is cancelled after this (it fails; the next tick runs it again)
    # ---- database waits (every keeper connection)
    db_statement_timeout_s: float = 300.0  # PostgreSQL statement_timeout; the client gives up 10 s later
    db_lock_timeout_s: float = 5.0  # PostgreSQL lock_timeout: a row held elsewhere fails the step, never hangs it
    # ---- resolution
    grace_period_s: int = 3_600  # past end + grace with no outcome source → reported as overdue
    feed_max_staleness_s: int = 3_600  # the deciding round (the first at or after end time) must come within this
    feed_max_rounds_back: int = 64
    # ---- transactions (all fee amounts in wei, integers)
    confirmations: int = 0  # 0 = [chain].confirmations
    confirm_at_finalized: bool = False  # true: "confirmed" only once the block is <= the node's finalized block
    replace_after_blocks: int = 3
    bump_bps: int = 1_250  # >= 1250 (12.5 %)
    max_fee_per_gas_cap: int = 500_000_000_000  # 500 gwei
    max_priority_fee_cap: int = 5_000_000_000  # 5 gwei
    min_priority_fee: int = 1_000_000_000  # 1 gwei
    base_fee_multiplier_pct: int = 200  # max fee = base fee * this / 100 + tip
    fee_history_blocks: int = 10
    fee_percentile: int = 50
    gas_margin_pct: int = 25  # gas limit = estimate * (100 + this) / 100
    max_gas_limit: int = 5_000_000  # and never above this or the latest block's gasLimit
    max_broadcast_refusals: int = 5  # an attempt refused for good this many times in a row is cancelled
    low_balance_wei: int = 100_000_000_000_000_000  # 0.1 ETH
    record_batch: int = 250  # transactions recorded per PostgreSQL transaction
    rpc_batch_size: int = 200  # calls per JSON-RPC batch (hosted providers cap it; anvil takes 1000s)
    # ---- aggregates and cache
    warm_enabled: bool = True
    api_base_url: str = ""  # "" = http://127.0.0.1:[api].port (the API in the same config file)
    leaderboard_size: int = 100
    history_days: int = 30  # keeper.job_runs and keeper.decisions older than this are pruned (the ledger never is)
    trending_size: int = 50

    def __post_init__(self) -> None:
        if self.signer not in ("keystore", "raw"):
            raise ConfigError(f"keeper.signer must be 'keystore' or 'raw', got {self.signer!r}")
        if self.bump_bps < MIN_BUMP_BPS:
            raise ConfigError(f"keeper.bump_bps must be >= {MIN_BUMP_BPS} (12.5 %), got {self.bump_bps}")
        if self.max_priority_fee_cap > self.max_fee_per_gas_cap:
            raise ConfigError("keeper.max_priority_fee_cap must be <= keeper.max_fee_per_gas_cap")
        if self.min_priority_fee > self.max_priority_fee_cap:
            raise ConfigError("keeper.min_priority_fee must be <= keeper.max_priority_fee_cap")
        check_cron(self.distribute_cron, "keeper.distribute_cron")
        if self.api_base_url:  # "" = the API of the same config file (load_settings)
            url = urllib.parse.urlsplit(self.api_base_url)
            try:
                _ = url.port  # ValueError: not a number, or out of range
                usable = url.scheme in ("http", "https") and bool(url.hostname)
            except ValueError:
                usable = False
            if not usable:
                raise ConfigError(
                    f"keeper.api_base_url must be an absolute http(s) URL such as 'http://127.0.0.1:8000',"
                    f" got {self.api_base_url!r}"
                )
        check_port("keeper.http_port", self.http_port, {0: "[services].keeper_metrics_port", -1: "no HTTP server"})
        for name, low, high in BOUNDS:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(
                    f"keeper.{name} must be within {low:g}..{high:g}, got {value!r}: set it in [keeper] (or"
                    f" GL_KEEPER__{name.upper()}) within that range"
                )
        if self.leader_lease_s < LEASE_POLLS * self.leader_poll_s:
            raise ConfigError(
                f"keeper.leader_lease_s ({self.leader_lease_s:g}) must be >= {LEASE_POLLS} x keeper.leader_poll_s"
                f" ({self.leader_poll_s:g}): the leader checks its lock every leader_poll_s and must do so"
                " several times within the lease"
            )
        if self.db_lock_timeout_s > self.db_statement_timeout_s:
            raise ConfigError(
                f"keeper.db_lock_timeout_s ({self.db_lock_timeout_s}) must be <= keeper.db_statement_timeout_s"
                f" ({self.db_statement_timeout_s})"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    keeper: KeeperSettings
    chain: ChainSettings
    database: DatabaseSettings
    redis: RedisSettings
    services: ServicesSettings
    config_path: str = ""

    @property
    def confirmations(self) -> int:
        return self.keeper.confirmations or self.chain.confirmations  # chain.confirmations >= 1 (core.config)

    @property
    def http_port(self) -> int:
        return self.services.keeper_metrics_port if self.keeper.http_port == 0 else self.keeper.http_port

    @property
    def http_port_key(self) -> str:
        """The config key that chose http_port (named when the port cannot be bound)."""
        return "services.keeper_metrics_port" if self.keeper.http_port == 0 else "keeper.http_port"

    @property
    def db_timeouts(self) -> DbTimeouts:
        return DbTimeouts(self.keeper.db_statement_timeout_s, self.keeper.db_lock_timeout_s)

    @property
    def is_local_chain(self) -> bool:
        return self.chain.chain_id in LOCAL_CHAIN_IDS


def settings_from(config: dict[str, Any], config_path: str = "") -> Settings:
    keeper = section(config, "keeper", KeeperSettings)
    chain = section(config, "chain", ChainSettings)
    if keeper.signer == "raw" and not keeper.local_dev_raw_key:
        raise ConfigError("keeper.signer = 'raw' needs keeper.local_dev_raw_key = true (local development only)")
    if keeper.signer == "raw" and chain.chain_id not in LOCAL_CHAIN_IDS:
        raise ConfigError(f"keeper.signer = 'raw' is refused on chain {chain.chain_id}: use a keystore")
    if not keeper.api_base_url:  # the API's own [api].port, read through core.warm (no import of the api wing)
        keeper = dataclasses.replace(keeper, api_base_url=api_base_url(config))
    return Settings(
        keeper=keeper,
        chain=chain,
        database=section(config, "database", DatabaseSettings),
        redis=section(config, "redis", RedisSettings),
        services=section(config, "services", ServicesSettings),
        config_path=config_path,
    )


def load_settings(path: str | Path) -> Settings:
    return settings_from(load_config(path), str(path))
