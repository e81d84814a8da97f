-- Issue 17 item 3: the keeper resolves in steps (OpinionMarket's propose -> challenge window -> finalize,
-- and the expiry path to INVALID). The resolve job now PROPOSES (job key resolve:{market_id}); the
-- finalize job calls finalizeOutcome (finalize:{market_id}); the expire job calls resolveExpired
-- (expire:{market_id}). Each is one ledger transaction per key (txs_job_key), exactly once.
ALTER TABLE keeper.txs DROP CONSTRAINT txs_job_check;
ALTER TABLE keeper.txs ADD CONSTRAINT txs_job_check
    CHECK (job IN ('resolve', 'finalize', 'expire', 'distribute', 'fill'));
-- keeper.job_requests (sql/050, applied after this file) keeps its job list: a requested 'resolve' runs
-- all three steps (keeper/daemon.py serve_requests), so `run --once --jobs finalize` asks for 'resolve'.

-- Markets whose proposed outcome an arbiter disputed: never finalized by the keeper; the arbiter settles
-- them (arbitrate) or anyone resolves them INVALID after the resolution window. Refreshed by every
-- finalize run (a row goes when the market is no longer disputed); `keeper status` lists them and
-- keeper_disputed_markets / KeeperMarketDisputed alert on them.
CREATE TABLE keeper.disputed_markets (
    chain_id         bigint   NOT NULL,
    market_id        bigint   NOT NULL,
    proposed_outcome smallint NOT NULL CHECK (proposed_outcome IN (0, 1, 2)),
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, market_id)
);
GRANT SELECT ON keeper.disputed_markets TO api;
