"""Indexer settings: one frozen dataclass per config section, read once at start.

[database], [redis], [chain] and [services] are shared sections (core.config); [indexer] is ours.
Every key of [indexer] is documented in docs/indexer.md. Unknown keys are rejected and errors
name the key (core.config.section).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.config import (
    ChainSettings,
    ConfigError,
    DatabaseSettings,
    Ranges,
    RedisSettings,
    ServicesSettings,
    check_port,
    check_ranges,
    load_config,
    section,
)
from core.contracts import Deployment, load_chain_deployment
from core.logs import check_log_level


@dataclasses.dataclass(frozen=True, slots=True)
class IndexerOptions:
    """The [indexer] section."""

    # HTTP port for /health, /ready, /metrics; 0 = [services].indexer_metrics_port; -1 = off.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # eth_getLogs block ranges: first span, operator maximum, target events per response (each 1 to
    # 10,000,000). The first range goes alone; the span doubles while responses are under a quarter
    # of the target.
    initial_span: int = 25
    max_span: int = 100_000  # operator maximum (blocks, 1 to 10,000,000)
    target_events: int = 6_000  # events per response the span adapts toward (1 to 10,000,000)
    # getLogs ranges in flight while backfilling (1 to 64). With target_events it bounds memory: on a
    # 1M-event backfill 2 x 6,000 events peaked at 212-220 MB for the writer and its fetch process
    # together (226 MB with the initial sync's 8 MB bitmap of keys written and the next batch encoded
    # while one commits; 224-250 MB when the first range was 100 blocks of 200 events), 2 x 8,000 at
    # 260-274 MB.
    concurrency: int = 2
    # Fetch, parse and decode backfill ranges in a second process, so the writer's event loop only
    # folds and writes (1M-event backfill: 7.9k -> 12.8k events/s before pipelined commits). false = in
    # the indexer process.
    fetch_process: bool = True
    # An initial sync (or a rebuild) drops the readers' secondary indexes of schema idx and builds them
    # when it reaches the head: sorting once costs a fraction of maintaining them row by row (1M-event
    # backfill: 20.3k -> 25.0k events/s, then 2.9 s of builds). Never when other chains share the database.
    defer_indexes: bool = True
    # An eth_getLogs answer larger than this (MB, 1 to 4,096) is refused and its range split, as a
    # provider's "too many results" would be: a node without result caps could otherwise return
    # gigabytes at once.
    max_response_mb: int = 32
    # Seconds per JSON-RPC request before it counts as failed (and is retried, maybe on another URL):
    # more than 0, at most 600.
    request_timeout: float = 10.0
    # Each JSON-RPC call is retried alone (backoff with jitter, Retry-After honoured) up to this many
    # attempts (1 to 10,000) or retry_seconds, whichever comes first, before the iteration counts as
    # failed.
    retries: int = 10
    retry_seconds: float = 120.0  # a call's time budget, waits included (more than 0, at most 86,400)
    # Background re-scan of finalized blocks (while idle at the head): every rescan_interval seconds
    # (0 = off, at most 604,800; the first pass one interval after start) the next finalized blocks, at
    # most rescan_span and at most the backfill's adaptive span, are read again and their events
    # compared with what is stored; a difference is logged and counted
    # (indexer_rescan_mismatches_total) and, with rescan_repair, repaired by re-indexing the chain from
    # its deploy block.
    rescan_interval: float = 60.0
    rescan_span: int = 2_000  # blocks per re-scan pass at most (1 to 10,000,000)
    rescan_repair: bool = True
    # Polling interval when no websocket is available (and the websocket's safety poll): more than 0,
    # at most 3,600 seconds.
    poll_interval: float = 1.0
    # Subscribe to newHeads over [chain].ws_url when set.
    use_websocket: bool = True
    # Finality source: "tag" = the node's `finalized`/`safe` blocks (fallback head - depth),
    # "depth" = head - [chain].finality_depth always.
    finality: str = "tag"
    # Blocks behind the head below which the tip path (block by block, by hash) takes over (0 to
    # 10,000,000; 0 = ranges until at the head).
    tip_blocks: int = 8
    # Outbox messages are written for events at most this many blocks behind the head (0 = always; at
    # most 10,000,000).
    outbox_max_lag: int = 256
    # Outbox rows older than this are deleted while the indexer is idle at the head (0 = kept forever;
    # at most 87,600). The feed replays at most feed_replay_max events to a reconnecting client; live,
    # every event near the head has a row, so without a bound the table grows with the chain.
    outbox_retention_hours: float = 72.0
    # /ready: lag at most this many blocks (0 to 10,000,000) and progress within ready_max_idle seconds.
    ready_max_lag: int = 16
    ready_max_idle: float = 30.0  # seconds (more than 0, at most 604,800)
    # Stall watchdog: the chain head moved but the checkpoint did not pass its highest block for this
    # long (more than 0, at most 604,800 seconds). While the providers still answer that is "degraded"
    # (logged, indexer_degraded = 1) until four times this; no answers either, or degraded that long,
    # is "stuck" -> exit 4.
    stall_seconds: float = 120.0
    # Consecutive failed iterations (RPC or database) before the process exits non-zero (1 to 1,000,000).
    max_failures: int = 30
    # Progress display: "auto" (bar on a TTY), "bar", "log".
    progress: str = "auto"
    log_level: str = "info"
    # Seconds between attempts to take the writer lock while standing by (more than 0, at most 3,600).
    standby_poll: float = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings
    redis: RedisSettings | None
    chain: ChainSettings
    options: IndexerOptions
    deployment: Deployment
    metrics_port: int

    def __repr__(self) -> str:
        return f"Settings(chain={self.chain!r}, options={self.options!r})"


# Every numeric key of [indexer] but metrics_port: (lowest, highest, unit, lowest excluded). Checked at
# load (one ConfigError naming the key, the value and the range, exit 2) and documented beside each
# field above: out of range, a key was accepted and failed later (tip_blocks = -1 never rebuilt the
# deferred indexes, request_timeout = inf never timed out).
RANGES: Ranges = {
    "initial_span": (1, 10_000_000, "blocks", False),
    "max_span": (1, 10_000_000, "blocks", False),
    "target_events": (1, 10_000_000, "events", False),
    "concurrency": (1, 64, "ranges", False),
    "max_response_mb": (1, 4_096, "MB", False),
    "request_timeout": (0, 600, "seconds", True),
    "retries": (1, 10_000, "attempts", False),
    "retry_seconds": (0, 86_400, "seconds", True),
    "rescan_interval": (0, 604_800, "seconds (0 = off)", False),
    "rescan_span": (1, 10_000_000, "blocks", False),
    "poll_interval": (0, 3_600, "seconds", True),
    "tip_blocks": (0, 10_000_000, "blocks", False),
    "outbox_max_lag": (0, 10_000_000, "blocks (0 = always)", False),
    "outbox_retention_hours": (0, 87_600, "hours (0 = keep forever)", False),
    "ready_max_lag": (0, 10_000_000, "blocks", False),
    "ready_max_idle": (0, 604_800, "seconds", True),
    "stall_seconds": (0, 604_800, "seconds", True),
    "max_failures": (1, 1_000_000, "iterations", False),
    "standby_poll": (0, 3_600, "seconds", True),
}


def build_settings(raw: Mapping[str, Any], need_deployment: bool = True) -> Settings:
    """Validates the config mapping (from core.config.load_config) into Settings. Without
    `need_deployment` (`indexer migrate`: migrations do not depend on a chain) a missing deployment
    file is no error, and the deployment is a placeholder nothing reads."""
    options = section(raw, "indexer", IndexerOptions)
    if options.finality not in ("tag", "depth"):
        raise ConfigError(f"indexer.finality must be 'tag' or 'depth', got {options.finality!r}")
    if options.progress not in ("auto", "bar", "log"):
        raise ConfigError(f"indexer.progress must be 'auto', 'bar' or 'log', got {options.progress!r}")
    check_ranges("indexer", options, RANGES)
    # the first ranges are never wider than the operator's maximum (review s20 hi: 25 blocks against 10)
    options = dataclasses.replace(options, initial_span=min(options.initial_span, options.max_span))
    check_port("indexer.metrics_port", options.metrics_port, {0: "[services].indexer_metrics_port", -1: "off"})
    options = dataclasses.replace(options, log_level=check_log_level("indexer.log_level", options.log_level))
    if not need_deployment and "chain" not in raw:  # migrate: [database] alone (docs/operations.md)
        chain = ChainSettings(chain_id=1, rpc_urls=("http://unused.invalid",), name="(no [chain]: migrate only)")
    else:
        chain = section(raw, "chain", ChainSettings)
    if not chain.rpc_urls:
        raise ConfigError("chain.rpc_urls must list at least one URL")
    database = section(raw, "database", DatabaseSettings)
    redis = section(raw, "redis", RedisSettings) if "redis" in raw else None
    if redis is not None and not redis.url:
        redis = None
    services = section(raw, "services", ServicesSettings)
    if need_deployment:
        deployment = load_chain_deployment(chain)
    else:  # never read by migrate: no address, no deploy block
        deployment = Deployment(chain.chain_id, "", "", "", None, 0, {})
    port = options.metrics_port if options.metrics_port != 0 else services.indexer_metrics_port
    return Settings(database, redis, chain, options, deployment, port)


def load_settings(path: str | Path, need_deployment: bool = True) -> Settings:
    return build_settings(load_config(path), need_deployment)
