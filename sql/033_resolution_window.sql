-- Issue 15 item 3: resolution with a challenge window. OpinionMarket no longer settles a market in one
-- call: a resolver proposes (OutcomeProposed), an arbiter may dispute inside the challenge window
-- (OutcomeDisputed), and MarketResolved comes from finalizeOutcome, arbitrate or resolveExpired.
CREATE TABLE idx.ev_outcome_proposed (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    outcome smallint NOT NULL,                 -- 0 NO, 1 YES, 2 INVALID
    proposer bytea NOT NULL,
    challenge_ends bigint NOT NULL,            -- unix seconds from which anyone may finalize
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_outcome_proposed_market ON idx.ev_outcome_proposed (chain_id, market_id);
GRANT SELECT ON idx.ev_outcome_proposed TO api;

CREATE TABLE idx.ev_outcome_disputed (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    proposed_outcome smallint NOT NULL,
    arbiter bytea NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_outcome_disputed_market ON idx.ev_outcome_disputed (chain_id, market_id);
GRANT SELECT ON idx.ev_outcome_disputed TO api;

-- The market's resolution status; `resolved` stays (the indexer keeps it = (status = 'resolved')) for the
-- readers that use it.
ALTER TABLE idx.markets
    ADD COLUMN status text NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'proposed', 'disputed', 'resolved')),
    ADD COLUMN proposed_outcome smallint,      -- while proposed or disputed (kept after resolution)
    ADD COLUMN challenge_ends timestamptz;     -- when the proposal can be finalized; null before one
UPDATE idx.markets SET status = 'resolved' WHERE resolved;
CREATE INDEX markets_proposed ON idx.markets (chain_id, challenge_ends) WHERE status IN ('proposed', 'disputed');

-- Analysts: status gains 'proposed' and 'disputed' (before: 'active' | 'closed' | 'resolved'), and the
-- proposal's outcome and window end are new columns at the end of public.markets.
CREATE OR REPLACE VIEW public.markets AS
SELECT m.chain_id,
       m.market_id,
       hex(m.creator) AS creator,
       m.question,
       m.category,
       m.end_time,
       CASE WHEN m.resolved THEN 'resolved'
            WHEN m.status IN ('proposed', 'disputed') THEN m.status
            WHEN m.end_time <= now() THEN 'closed'
            ELSE 'active' END AS status,
       CASE m.outcome WHEN 0 THEN 'no' WHEN 1 THEN 'yes' WHEN 2 THEN 'invalid' END AS outcome,
       usdc(m.yes_reserve) AS yes_reserve,
       usdc(m.no_reserve) AS no_reserve,
       trunc(m.no_reserve / (m.yes_reserve + m.no_reserve), 6) AS yes_price,
       trunc(m.yes_reserve / (m.yes_reserve + m.no_reserve), 6) AS no_price,
       usdc(m.volume) AS volume,
       usdc(m.fees) AS fees,
       m.trade_count,
       usdc(m.initial_liquidity) AS initial_liquidity,
       m.created_block,
       m.created_time,
       m.resolved_block,
       m.resolved_time,
       CASE m.proposed_outcome WHEN 0 THEN 'no' WHEN 1 THEN 'yes' WHEN 2 THEN 'invalid' END AS proposed_outcome,
       m.challenge_ends
  FROM idx.markets m;
