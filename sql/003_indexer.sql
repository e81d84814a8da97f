-- Indexer additions (additive only: no column of 001/002 is renamed or dropped).
--
-- 1. Undo journal for reorgs (docs/decisions.md "Indexer"): for every derived row first changed in
--    an unfinalized block, the row as it was before that block (NULL = did not exist). A rollback
--    to ancestor A restores, per key, the pre-image of the lowest journal block above A. Rows at or
--    below the finalized block are pruned in the batch that sees finality advance.
CREATE TABLE idx.undo (
    chain_id     bigint NOT NULL,
    block_number bigint NOT NULL,
    tbl          text   NOT NULL,            -- markets | positions | creators | share_holdings
    key          jsonb  NOT NULL,            -- primary key values without chain_id, encoded as `pre`
    pre          jsonb,                      -- whole row (without chain_id) or NULL; ints as decimal strings, bytes as 0x hex
    PRIMARY KEY (chain_id, block_number, tbl, key)
);

-- 2. Lossless strings. PostgreSQL text cannot hold NUL (0x00) nor invalid UTF-8, which a contract
--    string may contain. The text columns then hold a display form (invalid sequences and NUL
--    replaced by U+FFFD) and these bytea columns hold the exact bytes; they are NULL whenever the
--    text column is exact, so `coalesce(question_bytes, convert_to(question, 'UTF8'))` is always
--    the original.
ALTER TABLE idx.ev_market_created ADD COLUMN question_bytes bytea, ADD COLUMN category_bytes bytea;
ALTER TABLE idx.markets ADD COLUMN question_bytes bytea, ADD COLUMN category_bytes bytea;

-- 3. Blocks: how many of our events each block holds, so blocks without events can be pruned
--    once final while blocks with events are kept (their hash, parent hash and time stay queryable).
ALTER TABLE idx.blocks ADD COLUMN event_count int NOT NULL DEFAULT 0;

-- 4. Which block the indexer last announced as finalized (chain:finalized outbox messages) and
--    the lowest block that still has undo data (a reorg below it is ReorgTooDeep).
ALTER TABLE idx.checkpoints ADD COLUMN finalized_block bigint NOT NULL DEFAULT 0;

-- 5. Lookups the rollback and the fold need.
CREATE INDEX notifications_block ON idx.notifications (chain_id, block_number);
CREATE INDEX positions_market ON idx.positions (chain_id, market_id);

GRANT SELECT ON idx.undo TO api;
