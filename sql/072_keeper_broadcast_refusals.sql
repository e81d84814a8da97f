-- A transaction every node refuses for good (gas above the block's limit, a fee above the node's cap)
-- held its nonce, and so every later one, forever: it was re-sent and re-bumped each pass. Each
-- attempt counts the consecutive broadcasts the node refused for a reason about the transaction itself
-- (keeper/decide.py broadcast_refused_for_good; an accepted broadcast resets it); at
-- keeper.max_broadcast_refusals the keeper replaces it with a zero-value self-transfer at its nonce.
ALTER TABLE keeper.tx_attempts ADD COLUMN refusals int NOT NULL DEFAULT 0;
COMMENT ON COLUMN keeper.tx_attempts.refusals IS 'consecutive broadcasts refused for good (reset when one is accepted)';
COMMENT ON COLUMN keeper.tx_attempts.broadcast_error IS 'the node''s answer to the latest broadcast (null: accepted)';
