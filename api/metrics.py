"""Prometheus metrics of one API/feed process, in a registry of its own (one per app, so tests can
build many apps). Labels are bounded: route templates, methods, status codes, fixed outcomes."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("api_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "api_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        # result: hit_local | hit | shared | miss | error
        self.cache = Counter("api_cache_requests_total", "cache lookups", ["result"], registry=r)
        self.cache_invalidations = Counter("api_cache_invalidations_total", "keys deleted from outbox rows", registry=r)
        self.redis_up = Gauge("api_redis_up", "1 when the last Redis call succeeded", registry=r)
        self.db_up = Gauge("api_db_up", "1 when the last readiness check reached PostgreSQL", registry=r)
        self.rate_limited = Counter("api_rate_limited_total", "requests answered 429", registry=r)
        self.outbox_seq = Gauge(
            "api_outbox_seq", "last outbox seq this process has seen", ["chain_id"], registry=r
        )  # a few served chains
        self.indexer_lag = Gauge("api_indexer_lag_blocks", "chain head minus indexed block", registry=r)
        self.feed_connections = Gauge("feed_connections", "open feed connections", registry=r)
        self.feed_messages = Counter("feed_messages_total", "messages queued to feed clients", ["kind"], registry=r)
        self.feed_slow_disconnects = Counter(
            "feed_slow_consumer_disconnects_total", "connections closed because their queue was full", registry=r
        )
        self.feed_errors = Counter("feed_client_errors_total", "malformed or refused client frames", registry=r)
        self.feed_unbuilt = Counter(
            "feed_messages_unbuilt_total", "outbox rows not relayed: no payload (a trade's event row gone)", registry=r
        )
        self.feed_refused = Counter(
            "feed_connections_refused_total", "feed handshakes refused", ["reason"], registry=r
        )  # per_ip
        self.pool_timeouts = Counter(
            "api_pool_acquire_timeouts_total", "requests answered 503: no pool connection in time", ["pool"], registry=r
        )
        self.pool_in_use = Gauge("api_pool_connections_in_use", "pool connections checked out", ["pool"], registry=r)
        self.live_rankings = Counter(
            "api_live_rankings_total", "leaderboards ranked live (no keeper ranking yet)", ["board"], registry=r
        )  # traders | creators
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.cache_hit_local = self.cache.labels("hit_local")

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request: labelled children resolved once per (route, method, status) — labels() is
        a lock and a dict lookup per call, a measurable share of a cached request."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
