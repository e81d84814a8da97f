"""Process-wide tuning of the indexer's processes (the writer and the fetch child).

    tune_gc()  at start, once the modules are imported

CPython's cyclic collector runs every 700 net allocations and walks the young objects; a batch's
events and row copies live until the batch is written, so they are walked again in the older
generations. The backfill allocates millions of such objects and frees them by reference counting:
the collector finds nothing. (The one cycle per call we had, asyncpg building a reader class around a
BytesIO COPY source, is gone: store passes memoryviews.) Measured on the 1M-event backfill
(docs/benchmarks.md): writer CPU 31.9 s → 23.4 s, fetch process 25.8 s → 22.0 s, peak RSS unchanged.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (100_000, 50, 1_000)


def tune_gc() -> None:
    gc.freeze()  # what start-up built (modules, ABI tables, settings) is never garbage: never walk it
    gc.set_threshold(*GC_THRESHOLDS)
