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
    RedisSettings,
    ServicesSettings,
    check_port,
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
    # eth_getLogs block ranges: first span, operator maximum, target events per response.
    # The first range goes alone; the span doubles while responses are under a quarter of the target.
    initial_span: int = 25
    max_span: int = 100_000
    target_events: int = 6_000
    # getLogs ranges in flight while backfilling. With target_events it bounds memory: on a 1M-event
    # backfill 2 x 6,000 events peaked at 212-220 MB for the writer and its fetch process together
    # (226 MB with the initial sync's 8 MB bitmap of keys written and the next batch encoded while one
    # commits; 224-250 MB when the first range was 100 blocks of 200 events), 2 x 8,000 at 260-274 MB.
    concurrency: int = 2
    # Fetch, parse and decode backfill ranges in a second process, so the writer's event loop only
    # folds and writes (1M-event backfill: 7.9k -> 12.8k events/s before pipelined commits). false = in
    # the indexer process.
    fetch_process: bool = True
    # An initial sync (or a rebuild) drops the readers' secondary indexes of schema idx and builds them
    # when it reaches the head: sorting once costs a fraction of maintaining them row by row (1M-event
    # backfill: 20.3k -> 25.0k events/s, then 2.9 s of builds). Never when other chains share the database.
    defer_indexes: bool = True
    # An eth_getLogs answer larger than this (MB) is refused and its range split, as a provider's "too
    # many results" would be: a node without result caps could otherwise return gigabytes at once.
    max_response_mb: int = 32
    # Seconds per JSON-RPC request before it counts as failed (and is retried, maybe on another URL).
    request_timeout: float = 10.0
    # Each JSON-RPC call is retried alone (backoff with jitter, Retry-After honoured) up to this many
    # attempts or this many seconds, whichever comes first, before the iteration counts as failed.
    retries: int = 10
    retry_seconds: float = 120.0
    # Background re-scan of finalized blocks (while idle at the head): every rescan_interval seconds
    # (0 = off; the first pass one interval after start) the next finalized blocks, at most rescan_span
    # and at most the backfill's adaptive span, are read again and their events compared with what is
    # stored; a difference is logged and counted (indexer_rescan_mismatches_total) and, with
    # rescan_repair, repaired by re-indexing the chain from its deploy block.
    rescan_interval: float = 60.0
    rescan_span: int = 2_000
    rescan_repair: bool = True
    # Polling interval when no websocket is available (and the websocket's safety poll).
    poll_interval: float = 1.0
    # Subscribe to newHeads over [chain].ws_url when set.
    use_websocket: bool = True
    # Finality source: "tag" = the node's `finalized`/`safe` blocks (fallback head - depth),
    # "depth" = head - [chain].finality_depth always.
    finality: str = "tag"
    # Blocks behind the head below which the tip path (block by block, by hash) takes over.
    tip_blocks: int = 8
    # Outbox messages are written for events at most this many blocks behind the head (0 = always).
    outbox_max_lag: int = 256
    # Outbox rows older than this are deleted while the indexer is idle at the head (0 = kept forever).
    # The feed replays at most feed_replay_max events to a reconnecting client; live, every event near
    # the head has a row, so without a bound the table grows with the chain.
    outbox_retention_hours: float = 72.0
    # /ready: lag at most this many blocks and progress within this many seconds.
    ready_max_lag: int = 16
    ready_max_idle: float = 30.0
    # Stall watchdog: the chain head moved but the checkpoint did not for this long. While the providers
    # still answer that is "degraded" (logged, indexer_degraded = 1) until four times this; no answers
    # either, or degraded that long, is "stuck" -> exit 4.
    stall_seconds: float = 120.0
    # Consecutive failed iterations (RPC or database) before the process exits non-zero.
    max_failures: int = 30
    # Progress display: "auto" (bar on a TTY), "bar", "log".
    progress: str = "auto"
    log_level: str = "info"
    # Seconds between attempts to take the writer lock while standing by.
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


def build_settings(raw: Mapping[str, Any]) -> Settings:
    """Validates the config mapping (from core.config.load_config) into Settings."""
    options = section(raw, "indexer", IndexerOptions)
    if options.finality not in ("tag", "depth"):
        raise ConfigError(f"indexer.finality must be 'tag' or 'depth', got {options.finality!r}")
    if options.progress not in ("auto", "bar", "log"):
        raise ConfigError(f"indexer.progress must be 'auto', 'bar' or 'log', got {options.progress!r}")
    for key in (
        "initial_span",
        "max_span",
        "target_events",
        "concurrency",
        "max_failures",
        "max_response_mb",
        "retries",
        "rescan_span",
    ):
        if getattr(options, key) < 1:
            raise ConfigError(f"indexer.{key} must be at least 1")
    for key in ("request_timeout", "retry_seconds", "poll_interval", "stall_seconds", "standby_poll"):
        if not getattr(options, key) > 0:  # 0 or less: a busy loop (or a watchdog that fires at once)
            raise ConfigError(f"indexer.{key} must be a positive number of seconds, got {getattr(options, key)!r}")
    if options.outbox_max_lag < 0:
        raise ConfigError(f"indexer.outbox_max_lag must be 0 or more blocks, got {options.outbox_max_lag}")
    if options.rescan_interval < 0:
        raise ConfigError("indexer.rescan_interval must be 0 (off) or positive")
    check_port("indexer.metrics_port", options.metrics_port, {0: "[services].indexer_metrics_port", -1: "off"})
    options = dataclasses.replace(options, log_level=check_log_level("indexer.log_level", options.log_level))
    if options.outbox_retention_hours < 0:
        raise ConfigError("indexer.outbox_retention_hours must be 0 (keep forever) or positive")
    chain = section(raw, "chain", ChainSettings)
    if not chain.rpc_urls:
        raise ConfigError("chain.rpc_urls must list at least one URL")
    database = section(raw, "database", DatabaseSettings)
    redis = section(raw, "redis", RedisSettings) if "redis" in raw else None
    if redis is not None and not redis.url:
        redis = None
    services = section(raw, "services", ServicesSettings)
    deployment = load_chain_deployment(chain)
    port = options.metrics_port if options.metrics_port != 0 else services.indexer_metrics_port
    return Settings(database, redis, chain, options, deployment, port)


def load_settings(path: str | Path) -> Settings:
    return build_settings(load_config(path))
