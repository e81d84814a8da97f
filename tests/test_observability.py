"""Alert rules and the Grafana dashboard parse, and every metric they name is one our daemons export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "guesslyfe.json"

# PromQL words that look like identifiers but are not metric names.
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "absent",
    "time",
    "le",
    "topk",
    "bottomk",
    "changes",
    "resets",
    "abs",
    "e",
    "inf",
    "nan",
}
# Exporter metrics (postgres/redis/node exporters) named only by the `infrastructure` group.
EXTERNAL = {"node_cpu_seconds_total", "redis_memory_used_bytes", "redis_memory_max_bytes"}


def exported_metric_names() -> set[str]:
    """Series names each daemon's registry can emit (counters add _total, histograms _bucket/_sum/_count)."""
    from api.metrics import Metrics as ApiMetrics
    from indexer.metrics import Metrics as IndexerMetrics
    from keeper.metrics import Metrics as KeeperMetrics

    registries: list[CollectorRegistry] = [
        ApiMetrics().registry,
        IndexerMetrics(chain_id=31337).registry,
        KeeperMetrics().registry,
    ]
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names (label matchers and strings removed)."""
    stripped = re.sub(r"\{[^}]*\}", "", expr)
    stripped = re.sub(r'"[^"]*"', "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"(?<![a-zA-Z_:])\d+(\.\d+)?([eE][+-]?\d+)?", "", stripped)  # numbers like 1e18
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]", t)}


def balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def test_alert_rules_parse_and_name_exported_metrics() -> None:
    """Every rule has an expression over metrics we export, a severity, a summary and a runbook."""
    doc = yaml.safe_load(RULES.read_text())
    exported = exported_metric_names()
    alerts = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            alerts.append(rule["alert"])
            assert balanced(rule["expr"]), rule["alert"]
            assert rule["labels"]["severity"] in {"page", "warn", "info"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["runbook"], rule["alert"]
            names = metric_names(rule["expr"])
            assert names, f"{rule['alert']} names no metric"
            allowed = exported | EXTERNAL if group["name"] == "infrastructure" else exported
            assert names <= allowed, f"{rule['alert']}: not exported: {sorted(names - allowed)}"
    assert len(alerts) == len(set(alerts)), "duplicate alert names"


@pytest.mark.parametrize(
    "alert",
    [
        "ApiErrorRateHigh",
        "ApiLatencyP95High",
        "KeeperJobsFailing",
        "IndexerLagging",
        "IndexerStalled",
        "IndexerReorgNearFinality",
        "KeeperLowBalance",
        "KeeperStuckTransactions",
        "DatabaseCpuHigh",
        "RedisMemoryHigh",
    ],
)
def test_seed_and_issue_alert_conditions_exist(alert: str) -> None:
    """The seed's alert conditions and the issue's indexer/keeper alerts are all present."""
    doc = yaml.safe_load(RULES.read_text())
    assert alert in {r["alert"] for g in doc["groups"] for r in g["rules"]}


def test_dashboard_panels_name_exported_metrics() -> None:
    """The dashboard JSON parses and every panel query names only exported metrics."""
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metric_names()
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 20
    for t in targets:
        names = metric_names(t["expr"])
        assert names, t["expr"]
        assert names <= exported, f"{t['expr']}: not exported: {sorted(names - exported)}"


def test_metric_name_extraction_ignores_labels_and_functions() -> None:
    """The checker itself: label values, durations and PromQL functions are not metric names."""
    expr = 'sum by (le) (rate(api_request_seconds_bucket{route="/v1/x", status=~"5.."}[5m])) > 0.5'
    assert metric_names(expr) == {"api_request_seconds_bucket"}
    assert metric_names("max(keeper_balance_wei) / 1e18") == {"keeper_balance_wei"}
