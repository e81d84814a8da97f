"""Writes ops/grafana/guesslyfe.json (a Grafana dashboard over the daemons' metrics).

    python ops/grafana/build_dashboard.py
Kept as code so panels stay consistent; tests/test_observability.py checks every metric exists.
"""

import json
from pathlib import Path

PANELS = [
    (
        "Indexer",
        [
            (
                "Chain head vs indexed",
                [
                    "max(indexer_head_block)",
                    "max(indexer_indexed_block)",
                    "max(indexer_safe_block)",
                    "max(indexer_finalized_block)",
                ],
                "none",
            ),
            ("Lag (blocks)", ["max by (chain_id) (indexer_lag_blocks)"], "none"),
            ("Events/s", ["sum(rate(indexer_events_total[1m]))"], "ops"),
            (
                "Head latency p50/p99",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(indexer_head_latency_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(indexer_head_latency_seconds_bucket[5m])))",
                ],
                "s",
            ),
            (
                "Reorgs and depth",
                [
                    "sum(increase(indexer_reorgs_total[1h]))",
                    "histogram_quantile(1, sum by (le) (increase(indexer_reorg_depth_blocks_bucket[1h])))",
                ],
                "none",
            ),
            (
                "RPC p99 by method",
                ["histogram_quantile(0.99, sum by (le, method) (rate(indexer_rpc_seconds_bucket[5m])))"],
                "s",
            ),
            ("RPC errors/s", ["sum by (method) (rate(indexer_rpc_errors_total[5m]))"], "ops"),
            (
                "getLogs span (p50 blocks)",
                ["histogram_quantile(0.5, sum by (le) (rate(indexer_getlogs_span_blocks_bucket[5m])))"],
                "none",
            ),
        ],
    ),
    (
        "API and feed",
        [
            ("Requests/s by status", ["sum by (status) (rate(api_requests_total[1m]))"], "reqps"),
            (
                "Latency p95/p99",
                [
                    "histogram_quantile(0.95, sum by (le) (rate(api_request_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(api_request_seconds_bucket[5m])))",
                ],
                "s",
            ),
            (
                "Cache hit ratio",
                [
                    'sum(rate(api_cache_requests_total{result="hit"}[5m])) / '
                    "clamp_min(sum(rate(api_cache_requests_total[5m])), 1e-9)"
                ],
                "percentunit",
            ),
            ("Rate limited/s", ["sum(rate(api_rate_limited_total[5m]))"], "ops"),
            ("Feed connections", ["sum(feed_connections)"], "none"),
            ("Feed messages/s", ["sum by (kind) (rate(feed_messages_total[1m]))"], "ops"),
            ("Redis / PostgreSQL up", ["min(api_redis_up)", "min(api_db_up)"], "none"),
        ],
    ),
    (
        "Keeper",
        [
            ("Jobs by outcome", ["sum by (job, outcome) (increase(keeper_jobs_total[1h]))"], "none"),
            ("Transactions by outcome", ["sum by (job, outcome) (increase(keeper_tx_total[1h]))"], "none"),
            ("Pending txs and nonce gap", ["max(keeper_pending_txs)", "max(keeper_nonce_gap)"], "none"),
            ("Signer balance (ETH)", ["max(keeper_balance_wei) / 1e18"], "none"),
            ("Fees paid (ETH/h)", ["sum(increase(keeper_fees_paid_wei_total[1h])) / 1e18"], "none"),
            (
                "Replacements and reorged txs",
                ["sum(increase(keeper_tx_replaced_total[1h]))", "sum(increase(keeper_tx_reorged_total[1h]))"],
                "none",
            ),
            ("Leader / overdue markets", ["max(keeper_is_leader)", "max(keeper_overdue_markets)"], "none"),
        ],
    ),
]


def build() -> dict:
    panels, y, pid = [], 0, 1
    for row_title, items in PANELS:
        panels.append(
            {
                "type": "row",
                "title": row_title,
                "id": pid,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        pid, y = pid + 1, y + 1
        for i, (title, exprs, unit) in enumerate(items):
            panels.append(
                {
                    "type": "timeseries",
                    "title": title,
                    "id": pid,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "targets": [{"refId": chr(65 + j), "expr": e} for j, e in enumerate(exprs)],
                }
            )
            pid += 1
        y += ((len(items) + 2) // 3) * 8
    return {
        "title": "GuessLyfe chain backend",
        "uid": "guesslyfe",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["guesslyfe"],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("guesslyfe.json")
    out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {out}")
