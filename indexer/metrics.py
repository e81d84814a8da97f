"""Prometheus metrics of one indexer process (own registry: several indexers can live in a test).

Few metrics, bounded labels: chain_id, RPC method (the handful we call) and outcome. Never an
address or a hash as a label.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, chain_id: int, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        c = str(chain_id)

        def per_chain(kind: Any, name: str, doc: str, **kw: Any) -> Any:
            """One child of a metric labelled by chain_id only."""
            return kind(name, doc, ["chain_id"], registry=r, **kw).labels(c)

        self._head = per_chain(Gauge, "indexer_head_block", "Latest block of the node")
        self._indexed = per_chain(Gauge, "indexer_indexed_block", "Checkpoint: last block fully indexed")
        self._safe = per_chain(Gauge, "indexer_safe_block", "The node's safe block")
        self._finalized = per_chain(Gauge, "indexer_finalized_block", "Finalized block (tag or head - depth)")
        self._lag = per_chain(Gauge, "indexer_lag_blocks", "head - indexed")
        self._events = per_chain(Counter, "indexer_events_total", "Events written")
        self._reorgs = per_chain(Counter, "indexer_reorgs_total", "Reorgs handled")
        self._depth = per_chain(
            Histogram,
            "indexer_reorg_depth_blocks",
            "Depth of handled reorgs",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self._rollback = per_chain(Histogram, "indexer_rollback_seconds", "Time to roll back a reorg", buckets=_LATENCY)
        self._rpc = Histogram(
            "indexer_rpc_seconds", "JSON-RPC request latency", ["method", "outcome"], buckets=_LATENCY, registry=r
        )
        self._rpc_errors = Counter("indexer_rpc_errors_total", "Failed JSON-RPC requests", ["method"], registry=r)
        self._span = per_chain(
            Histogram,
            "indexer_getlogs_span_blocks",
            "Blocks per eth_getLogs range",
            buckets=(1, 10, 100, 1_000, 2_000, 10_000, 100_000),
        )
        self._batch = per_chain(
            Histogram, "indexer_batch_seconds", "Decode + fold + commit time per batch", buckets=_LATENCY
        )
        self._head_latency = per_chain(
            Histogram, "indexer_head_latency_seconds", "newHeads announcement to commit", buckets=_LATENCY
        )
        self._failures = per_chain(Counter, "indexer_failures_total", "Failed loop iterations (retried)")
        self.deferred_indexes = per_chain(
            Gauge, "indexer_deferred_indexes", "Secondary indexes dropped for the initial sync and not yet built"
        )
        self.stalled = per_chain(Gauge, "indexer_stalled", "1 when the stall watchdog fired")
        self._fetch_wait = per_chain(
            Counter,
            "indexer_fetch_wait_seconds_total",
            "Backfill time the writer spent waiting for the next fetched range (grows when fetching is the bottleneck)",
        )
        self._fetch_restarts = per_chain(
            Counter, "indexer_fetch_process_starts_total", "Fetch child processes started (more than 1: one died)"
        )
        self._outbox_pruned = per_chain(
            Counter, "indexer_outbox_pruned_total", "Outbox rows deleted after outbox_retention_hours"
        )
        self._rate_limited = per_chain(
            Counter, "indexer_rpc_rate_limited_total", "Requests a provider refused with HTTP 429 or a rate-limit error"
        )
        self._answers = Counter(
            "indexer_rpc_answer_repairs_total",
            "Provider answers corrected: duplicated logs dropped, missed logs recovered by the bloom check,"
            " eth_getLogs ranges narrowed",
            ["chain_id", "kind"],
            registry=r,
        ).labels
        self._chain = c
        self.degraded = per_chain(
            Gauge, "indexer_degraded", "1 while the checkpoint is not moving but the providers still answer"
        )
        self._gaps = per_chain(
            Counter, "indexer_outbox_gaps_total", "chain:gap outbox messages (stretches indexed without feed messages)"
        )
        self._rescan_blocks = per_chain(
            Counter, "indexer_rescan_blocks_total", "Finalized blocks re-read and compared with what is stored"
        )
        self._rescan_mismatch = per_chain(
            Counter, "indexer_rescan_mismatches_total", "Re-scanned ranges whose events differ from what is stored"
        )
        self._blind_copied = per_chain(
            Counter,
            "indexer_blind_rows_copied_total",
            "Blind position/holding rows COPYed as new (key certainly not stored) instead of added to by key",
        )
        self.indexed = -1
        self.head = 0

    def set_heads(self, head: int, safe: int | None, finalized: int, indexed: int) -> None:
        self.head = head
        self._head.set(head)
        if safe is not None:
            self._safe.set(safe)
        self._finalized.set(finalized)
        if indexed >= 0:
            self._lag.set(max(0, head - indexed))

    def committed(self, indexed: int, events: int) -> None:
        self.indexed = indexed
        self._indexed.set(indexed)
        self._lag.set(max(0, self.head - indexed))
        self._events.inc(events)

    def reorg(self, depth: int, seconds: float) -> None:
        self._reorgs.inc()
        self._depth.observe(depth)
        self._rollback.observe(seconds)

    def rpc(self, method: str, seconds: float, outcome: str) -> None:
        if outcome == "ok":
            self._rpc.labels(method, outcome).observe(seconds)
        else:
            self._rpc_errors.labels(method).inc()
            if outcome == "rate_limited":
                self._rate_limited.inc()

    def answer_repaired(self, kind: str, n: int = 1) -> None:
        """kind: split | duplicates | recovered (a fixed vocabulary)."""
        self._answers(self._chain, kind).inc(n)

    def gap(self) -> None:
        self._gaps.inc()

    def rescanned(self, blocks: int, mismatch: bool) -> None:
        self._rescan_blocks.inc(blocks)
        if mismatch:
            self._rescan_mismatch.inc()

    def span(self, blocks: int) -> None:
        self._span.observe(blocks)

    def batch_seconds(self, seconds: float) -> None:
        self._batch.observe(seconds)

    def head_latency(self, seconds: float) -> None:
        self._head_latency.observe(seconds)

    def failure(self) -> None:
        self._failures.inc()

    def fetch_wait(self, seconds: float) -> None:
        self._fetch_wait.inc(seconds)

    def fetch_process_started(self) -> None:
        self._fetch_restarts.inc()

    def blind_copied(self, rows: int) -> None:
        if rows:
            self._blind_copied.inc(rows)

    def outbox_pruned(self, rows: int) -> None:
        self._outbox_pruned.inc(rows)
