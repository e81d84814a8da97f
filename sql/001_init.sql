-- GuessLyfe indexer schema.
--
-- schema idx    : written only by the indexer (one writer per chain). Raw event tables
--                 (ev_*), derived state, blocks, checkpoint, outbox. Everything here can be
--                 rebuilt from the chain alone.
-- schema public : the analysts' stable surface, views only (see 002_views.sql, docs/sql.md).
--
-- Conventions: every row carries chain_id; addresses and hashes are bytea (20/32 bytes);
-- token amounts and shares are exact integers in base units, numeric(78,0) (uint256);
-- ordering key (chain_id, block_number, log_index); identity adds block_hash.

CREATE SCHEMA IF NOT EXISTS idx;

-- ------------------------------------------------------------------ bookkeeping

CREATE TABLE idx.checkpoints (
    chain_id     bigint PRIMARY KEY,
    block_number bigint NOT NULL,           -- last block fully indexed
    block_hash   bytea  NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The node's view of the chain, refreshed by the indexer on every poll/head.
CREATE TABLE idx.chain_heads (
    chain_id       bigint PRIMARY KEY,
    head_block     bigint NOT NULL,
    safe_block     bigint,
    finalized_block bigint,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Hash chain of every unfinalized block and of every block that holds events.
CREATE TABLE idx.blocks (
    chain_id     bigint NOT NULL,
    block_number bigint NOT NULL,
    block_hash   bytea  NOT NULL,
    parent_hash  bytea  NOT NULL,
    block_time   timestamptz NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);

-- Contracts and their configuration (from FeesConfigured / CurveConfigured and the deployment file).
CREATE TABLE idx.contracts (
    chain_id     bigint NOT NULL,
    name         text   NOT NULL,            -- OpinionMarket | CreatorShares
    address      bytea  NOT NULL,
    deploy_block bigint NOT NULL,
    config       jsonb  NOT NULL DEFAULT '{}'::jsonb,  -- integer parameters as decimal strings
    PRIMARY KEY (chain_id, name)
);

-- Transactional outbox: written in the same transaction as the rows it announces. `seq` is
-- strictly increasing in commit order (writers take an advisory xact lock before inserting).
CREATE TABLE idx.outbox (
    seq          bigserial PRIMARY KEY,
    chain_id     bigint NOT NULL,
    event        text   NOT NULL,            -- market:trade, chain:reorg, ...
    rooms        text[] NOT NULL,            -- global:all, market:{id}, user:{address}, creator:{address}
    block_number bigint,
    log_index    int,
    block_hash   bytea,
    payload      jsonb  NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_chain_block ON idx.outbox (chain_id, block_number);

CREATE TABLE idx.reorgs (
    id              bigserial PRIMARY KEY,
    chain_id        bigint NOT NULL,
    common_ancestor bigint NOT NULL,
    old_head        bigint NOT NULL,
    depth           int    NOT NULL,
    removed_events  int    NOT NULL,
    detected_at     timestamptz NOT NULL DEFAULT now()
);

-- ------------------------------------------------------------------ raw events
-- One table per event; columns mirror the event's fields. PK = (chain_id, block_number, log_index).

CREATE TABLE idx.ev_market_created (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    creator bytea NOT NULL,
    question text NOT NULL,
    category text NOT NULL,
    end_time numeric(78,0) NOT NULL,
    initial_liquidity numeric(78,0) NOT NULL,
    yes_reserve numeric(78,0) NOT NULL,
    no_reserve numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

CREATE TABLE idx.ev_trade (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    trader bytea NOT NULL,
    is_buy boolean NOT NULL,
    outcome smallint NOT NULL,                 -- 0 NO, 1 YES
    collateral numeric(78,0) NOT NULL,         -- buy: paid incl. fee; sell: received after fee
    shares numeric(78,0) NOT NULL,
    fee numeric(78,0) NOT NULL,
    creator_fee numeric(78,0) NOT NULL,
    yes_reserve numeric(78,0) NOT NULL,        -- post-state
    no_reserve numeric(78,0) NOT NULL,
    trader_yes numeric(78,0) NOT NULL,
    trader_no numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_trade_market ON idx.ev_trade (chain_id, market_id, block_number DESC, log_index DESC);
CREATE INDEX ev_trade_trader ON idx.ev_trade (chain_id, trader, block_number DESC, log_index DESC);
CREATE INDEX ev_trade_time ON idx.ev_trade (chain_id, block_time DESC);

CREATE TABLE idx.ev_market_resolved (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    outcome smallint NOT NULL,                 -- 0 NO, 1 YES, 2 INVALID
    resolver bytea NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

CREATE TABLE idx.ev_winnings_claimed (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    holder bytea NOT NULL,
    payout numeric(78,0) NOT NULL,
    yes_burned numeric(78,0) NOT NULL,
    no_burned numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_winnings_claimed_holder ON idx.ev_winnings_claimed (chain_id, holder);

CREATE TABLE idx.ev_liquidity_withdrawn (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    market_id bigint NOT NULL,
    creator bytea NOT NULL,
    payout numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

CREATE TABLE idx.ev_creator_fees_collected (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    creator bytea NOT NULL,
    collector bytea NOT NULL,
    amount numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

CREATE TABLE idx.ev_shares_traded (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    creator bytea NOT NULL,
    trader bytea NOT NULL,
    is_buy boolean NOT NULL,
    amount numeric(78,0) NOT NULL,             -- shares
    price numeric(78,0) NOT NULL,              -- curve price excl. fees
    protocol_fee numeric(78,0) NOT NULL,
    creator_fee numeric(78,0) NOT NULL,
    dividend_fee numeric(78,0) NOT NULL,
    supply numeric(78,0) NOT NULL,             -- post-state
    trader_shares numeric(78,0) NOT NULL,
    trader_claimable numeric(78,0) NOT NULL,
    locked_until numeric(78,0) NOT NULL,
    pool numeric(78,0) NOT NULL,
    acc_per_share numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_shares_traded_creator ON idx.ev_shares_traded (chain_id, creator, block_number DESC, log_index DESC);
CREATE INDEX ev_shares_traded_trader ON idx.ev_shares_traded (chain_id, trader, block_number DESC, log_index DESC);

CREATE TABLE idx.ev_dividends_distributed (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    creator bytea NOT NULL,
    amount numeric(78,0) NOT NULL,
    market_fees numeric(78,0) NOT NULL,
    supply numeric(78,0) NOT NULL,
    acc_per_share numeric(78,0) NOT NULL,
    pool numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_dividends_distributed_creator ON idx.ev_dividends_distributed (chain_id, creator, block_number DESC);

CREATE TABLE idx.ev_dividends_claimed (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    creator bytea NOT NULL,
    holder bytea NOT NULL,
    amount numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_dividends_claimed_holder ON idx.ev_dividends_claimed (chain_id, holder, block_number DESC);

CREATE TABLE idx.ev_creator_fees_claimed (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    creator bytea NOT NULL,
    amount numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- Every other event of the two contracts (roles, pause, protocol fee withdrawals, configuration):
-- kept for audit, decoded to JSON (integers as decimal strings).
CREATE TABLE idx.ev_other (
    chain_id bigint NOT NULL, block_number bigint NOT NULL, log_index int NOT NULL,
    block_hash bytea NOT NULL, tx_hash bytea NOT NULL, block_time timestamptz NOT NULL,
    address bytea NOT NULL,
    event text NOT NULL,
    args jsonb NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- ------------------------------------------------------------------ derived state
-- A pure fold of the raw events above (indexer/fold.py); recomputable per key.

CREATE TABLE idx.markets (
    chain_id bigint NOT NULL,
    market_id bigint NOT NULL,
    creator bytea NOT NULL,
    question text NOT NULL,
    category text NOT NULL,
    end_time timestamptz NOT NULL,
    initial_liquidity numeric(78,0) NOT NULL,
    yes_reserve numeric(78,0) NOT NULL,
    no_reserve numeric(78,0) NOT NULL,
    resolved boolean NOT NULL DEFAULT false,
    outcome smallint,                          -- null until resolved
    volume numeric(78,0) NOT NULL DEFAULT 0,   -- collateral of buys + sells
    fees numeric(78,0) NOT NULL DEFAULT 0,
    trade_count bigint NOT NULL DEFAULT 0,
    liquidity_withdrawn numeric(78,0),         -- creator's LP payout, null until withdrawn
    created_block bigint NOT NULL,
    created_time timestamptz NOT NULL,
    created_tx bytea NOT NULL,
    resolved_block bigint,
    resolved_time timestamptz,
    last_trade_block bigint,
    last_trade_time timestamptz,
    PRIMARY KEY (chain_id, market_id)
);
CREATE INDEX markets_category ON idx.markets (chain_id, category);
CREATE INDEX markets_creator ON idx.markets (chain_id, creator);
CREATE INDEX markets_end_time ON idx.markets (chain_id, end_time);
CREATE INDEX markets_created ON idx.markets (chain_id, created_block DESC);
CREATE INDEX markets_volume ON idx.markets (chain_id, volume DESC);
CREATE INDEX markets_open ON idx.markets (chain_id, end_time) WHERE NOT resolved;

-- Average-cost accounting per outcome, in base units, integer division rounding down:
--   buy:   cost_o += collateral; shares_o += shares
--   sell:  removed = cost_o * sold / shares_o_before; realized += proceeds - removed; cost_o -= removed
--   claim: realized += payout - (yes_cost + no_cost); costs and shares -> 0; claimed += payout
CREATE TABLE idx.positions (
    chain_id bigint NOT NULL,
    market_id bigint NOT NULL,
    holder bytea NOT NULL,
    yes_shares numeric(78,0) NOT NULL DEFAULT 0,
    no_shares numeric(78,0) NOT NULL DEFAULT 0,
    yes_cost numeric(78,0) NOT NULL DEFAULT 0,
    no_cost numeric(78,0) NOT NULL DEFAULT 0,
    bought numeric(78,0) NOT NULL DEFAULT 0,   -- collateral paid, all time
    sold numeric(78,0) NOT NULL DEFAULT 0,     -- collateral received from sells, all time
    realized_pnl numeric(78,0) NOT NULL DEFAULT 0,  -- may be negative
    claimed numeric(78,0) NOT NULL DEFAULT 0,  -- payout received from claimWinnings
    trade_count bigint NOT NULL DEFAULT 0,
    updated_block bigint NOT NULL,
    PRIMARY KEY (chain_id, market_id, holder)
);
CREATE INDEX positions_holder ON idx.positions (chain_id, holder);

CREATE TABLE idx.creators (
    chain_id bigint NOT NULL,
    creator bytea NOT NULL,
    supply numeric(78,0) NOT NULL DEFAULT 0,
    acc_per_share numeric(78,0) NOT NULL DEFAULT 0,  -- scaled by 1e18
    pool numeric(78,0) NOT NULL DEFAULT 0,           -- held by CreatorShares, undistributed
    market_fees_accrued numeric(78,0) NOT NULL DEFAULT 0,  -- held by OpinionMarket, not yet collected
    creator_fees numeric(78,0) NOT NULL DEFAULT 0,   -- creator's own share-trade fees, unclaimed
    distributed_total numeric(78,0) NOT NULL DEFAULT 0,
    distribution_count bigint NOT NULL DEFAULT 0,
    holder_count bigint NOT NULL DEFAULT 0,
    volume numeric(78,0) NOT NULL DEFAULT 0,         -- curve price of shares bought + sold
    trade_count bigint NOT NULL DEFAULT 0,
    first_block bigint NOT NULL,
    updated_block bigint NOT NULL,
    PRIMARY KEY (chain_id, creator)
);

-- claimable = credited + shares * (creators.acc_per_share - acc_paid) / 1e18 (rounded down)
CREATE TABLE idx.share_holdings (
    chain_id bigint NOT NULL,
    creator bytea NOT NULL,
    holder bytea NOT NULL,
    shares numeric(78,0) NOT NULL DEFAULT 0,
    locked_until numeric(78,0) NOT NULL DEFAULT 0,
    credited numeric(78,0) NOT NULL DEFAULT 0,
    acc_paid numeric(78,0) NOT NULL DEFAULT 0,
    claimed_total numeric(78,0) NOT NULL DEFAULT 0,
    updated_block bigint NOT NULL,
    PRIMARY KEY (chain_id, creator, holder)
);
CREATE INDEX share_holdings_holder ON idx.share_holdings (chain_id, holder);

-- Derived from events; identity (chain_id, block_number, log_index, recipient) so a reorg
-- removes exactly the notifications of the removed events.
CREATE TABLE idx.notifications (
    chain_id bigint NOT NULL,
    block_number bigint NOT NULL,
    log_index int NOT NULL,
    recipient bytea NOT NULL,
    kind text NOT NULL,                       -- market_resolved | winnings_claimable | dividends_distributed
    title text NOT NULL,
    message text NOT NULL,
    market_id bigint,
    creator bytea,
    amount numeric(78,0),
    block_time timestamptz NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index, recipient)
);
CREATE INDEX notifications_recipient ON idx.notifications (chain_id, recipient, block_number DESC);
