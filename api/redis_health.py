"""One view of Redis's health, shared by the cache and the rate limiter (they use one client).

Redis down or stalled: every call waits up to the client's socket timeout (0.5 s) before it fails.
After a failure both skip Redis (the cache answers from PostgreSQL, the limiter fails open) for a
back-off that doubles while it keeps failing, from 1 s to 30 s; a success anywhere (a request's, or
/ready's ping) ends it. Before, the limiter had no back-off and the cache's was a fixed 1 s: a
stalled Redis (SIGSTOP, a fork for a snapshot, a partition) added 0.5–1 s to every request (review h2).
"""

from __future__ import annotations

import time

import structlog

from api.metrics import Metrics

log = structlog.get_logger("api.redis")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0


class RedisHealth:
    def __init__(self, metrics: Metrics, up: bool = True) -> None:
        self.metrics = metrics
        self.ok = up
        self.retry_at = 0.0
        self.backoff_s = BACKOFF_MIN_S

    def available(self) -> bool:
        """Worth a call: healthy, or the back-off since the last failure has passed."""
        return self.ok or time.monotonic() >= self.retry_at

    def failed(self, op: str, exc: BaseException) -> None:
        if self.ok:
            log.warning("redis_unavailable", op=op, error=type(exc).__name__)
            self.backoff_s = BACKOFF_MIN_S
        else:  # a retry after the back-off failed too: wait longer
            self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2)
        self.ok = False
        self.retry_at = time.monotonic() + self.backoff_s
        self.metrics.redis_up.set(0)

    def succeeded(self) -> None:
        if not self.ok:
            log.info("redis_recovered")
        self.ok = True
        self.backoff_s = BACKOFF_MIN_S
        self.metrics.redis_up.set(1)
