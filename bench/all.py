"""`make bench`: every benchmark, one after another (they share 2 cores; never run two at once).

    python -m bench.all              # all of them (the 1M-event backfill and the 10M-trade query set take minutes)
    python -m bench.all gas keeper   # only those whose name contains one of the words

Each benchmark prints its own figures and the command that produced them; docs/benchmarks.md holds
the recorded results. A failing benchmark is reported and the rest still run; the exit code is the
number of failures.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS: list[tuple[str, list[str]]] = [
    ("gas", ["-m", "bench.gas"]),
    ("indexer_backfill", ["-m", "bench.indexer_backfill"]),
    ("indexer_latency", ["-m", "bench.indexer_latency"]),
    ("indexer_limit", ["-m", "bench.indexer_limit", "--events", "200000"]),
    ("codegen", ["-m", "bench.codegen"]),
    ("keeper_resolve", ["-m", "bench.keeper_resolve"]),
    ("api_http", ["-m", "bench.api_http"]),
    ("api_wrk", ["-m", "bench.api_wrk"]),
    ("http_guard", ["-m", "bench.http_guard"]),
    ("agg_triggers", ["-m", "bench.agg_triggers"]),
    ("api_queries", ["-m", "bench.api_queries"]),
    ("api_feed_latency", ["-m", "bench.api_feed_latency", "--seconds", "60"]),
    ("api_feed_fanout", ["-m", "bench.api_feed_fanout", "--connections", "10000", "--events", "5"]),
]


def main(argv: list[str]) -> int:
    chosen = [(n, a) for n, a in BENCHMARKS if not argv or any(w in n for w in argv)]
    failures = []
    for name, args in chosen:
        print(f"\n=== {name}: python {' '.join(args)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, *args])
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failures.append(name)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
    return len(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
