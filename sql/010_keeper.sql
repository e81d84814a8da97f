-- Keeper state (schema keeper): written only by the keeper leader of a chain.
--
-- The ledger (txs + tx_attempts + nonces) is written BEFORE anything is broadcast, in a
-- transaction that also checks the writer's fencing epoch against keeper.leaders (a stale
-- leader's writes fail). Addresses, hashes, calldata and raw transactions are bytea; wei
-- amounts are numeric(78,0); nothing here is a float.

CREATE SCHEMA IF NOT EXISTS keeper;

-- One row per chain: the current leader's fencing epoch, bumped by every new leader.
CREATE TABLE keeper.leaders (
    chain_id    bigint PRIMARY KEY,
    epoch       bigint NOT NULL,
    holder      text   NOT NULL,                -- host:pid of the leader
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- One logical transaction per job key (resolve:{market_id}, distribute:{creator}:{period},
-- fill:{sender}:{nonce}); its broadcasts (original + fee bumps) are tx_attempts.
--   pending   recorded, maybe broadcast, not mined
--   mined     a receipt with status 1 exists, fewer than the configured confirmations
--   confirmed confirmations reached (still watched until finalized: a reorg sends it back to pending)
--   reverted  mined with status 0 (the contract refused; never retried automatically)
--   dropped   its nonce was consumed by a transaction we did not record; the job may be planned again
CREATE TABLE keeper.txs (
    id                  bigserial PRIMARY KEY,
    chain_id            bigint NOT NULL,
    job                 text   NOT NULL CHECK (job IN ('resolve', 'distribute', 'fill')),
    job_key             text   NOT NULL,
    sender              bytea  NOT NULL,
    to_address          bytea  NOT NULL,
    data                bytea  NOT NULL,
    value               numeric(78,0) NOT NULL DEFAULT 0,
    nonce               bigint NOT NULL,
    gas_limit           bigint NOT NULL,
    status              text   NOT NULL CHECK (status IN ('pending', 'mined', 'confirmed', 'reverted', 'dropped')),
    epoch               bigint NOT NULL,         -- fencing epoch of the leader that recorded it
    market_id           bigint,
    creator             bytea,
    queue_id            bigint,
    mined_tx_hash       bytea,
    mined_block         bigint,
    mined_block_hash    bytea,
    gas_used            bigint,
    effective_gas_price numeric(78,0),
    fee_paid            numeric(78,0),           -- gas_used * effective_gas_price, wei
    finalized           boolean NOT NULL DEFAULT false,
    reorg_count         int    NOT NULL DEFAULT 0,
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    confirmed_at        timestamptz
);
-- Exactly once: one live transaction per job key and per nonce.
CREATE UNIQUE INDEX txs_job_key ON keeper.txs (chain_id, job_key) WHERE status <> 'dropped';
CREATE UNIQUE INDEX txs_nonce ON keeper.txs (chain_id, sender, nonce) WHERE status <> 'dropped';
CREATE INDEX txs_open ON keeper.txs (chain_id, sender, nonce) WHERE status <> 'dropped' AND NOT finalized;
CREATE INDEX txs_market ON keeper.txs (chain_id, market_id);

CREATE TABLE keeper.tx_attempts (
    id                       bigserial PRIMARY KEY,
    tx_id                    bigint NOT NULL REFERENCES keeper.txs (id),
    chain_id                 bigint NOT NULL,
    attempt                  int    NOT NULL,    -- 0 = original, 1.. = fee bumps
    tx_hash                  bytea  NOT NULL,
    raw_tx                   bytea  NOT NULL,    -- signed; rebroadcast as-is after a crash or reorg
    max_fee_per_gas          numeric(78,0) NOT NULL,
    max_priority_fee_per_gas numeric(78,0) NOT NULL,
    epoch                    bigint NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    broadcast_at             timestamptz,         -- null: recorded, not (yet) sent
    sent_block               bigint,              -- head when last (re)broadcast
    broadcast_error          text,
    UNIQUE (chain_id, tx_hash),
    UNIQUE (tx_id, attempt)
);

-- Local nonce allocation per signer (never moves backwards while transactions are pending).
CREATE TABLE keeper.nonces (
    chain_id   bigint NOT NULL,
    sender     bytea  NOT NULL,
    next_nonce bigint NOT NULL,
    epoch      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, sender)
);

-- Operator resolutions: `python -m keeper resolve MARKET yes|no|invalid --reason TEXT`.
--   queued → sent (tx recorded) → resolved | failed ; queued → cancelled ; queued → skipped
CREATE TABLE keeper.resolution_queue (
    id            bigserial PRIMARY KEY,
    chain_id      bigint   NOT NULL,
    market_id     bigint   NOT NULL,
    outcome       smallint NOT NULL CHECK (outcome IN (0, 1, 2)),  -- 0 NO, 1 YES, 2 INVALID
    reason        text     NOT NULL,
    requested_by  text     NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    status        text     NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sent', 'resolved', 'skipped', 'failed', 'cancelled')),
    status_reason text,
    tx_id         bigint REFERENCES keeper.txs (id),
    cancelled_by  text,
    cancelled_at  timestamptz,
    cancel_reason text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX resolution_queue_active ON keeper.resolution_queue (chain_id, market_id)
    WHERE status IN ('queued', 'sent');

-- Markets bound to an AggregatorV3 feed: at end_time, answer <comparison> threshold → outcome_if_true.
CREATE TABLE keeper.price_feed_rules (
    chain_id         bigint   NOT NULL,
    market_id        bigint   NOT NULL,
    feed             bytea    NOT NULL,
    comparison       text     NOT NULL CHECK (comparison IN ('gt', 'gte', 'lt', 'lte')),
    threshold        numeric(78,0) NOT NULL,        -- in the feed's own decimals (may be negative)
    outcome_if_true  smallint NOT NULL DEFAULT 1 CHECK (outcome_if_true IN (0, 1, 2)),
    outcome_if_false smallint NOT NULL DEFAULT 0 CHECK (outcome_if_false IN (0, 1, 2)),
    created_by       text     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, market_id)
);

-- Why the keeper did NOT send something (already resolved, empty pool, simulation revert,
-- overdue market, dry-run plan). Append-only.
CREATE TABLE keeper.decisions (
    id         bigserial PRIMARY KEY,
    chain_id   bigint NOT NULL,
    job        text   NOT NULL,
    job_key    text   NOT NULL,
    action     text   NOT NULL,                  -- skipped | overdue | planned (dry run) | fenced
    reason     text   NOT NULL,
    detail     jsonb  NOT NULL DEFAULT '{}'::jsonb,
    epoch      bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_key ON keeper.decisions (chain_id, job_key, created_at DESC);

-- Markets past end + grace with no outcome source; refreshed by every resolve run.
CREATE TABLE keeper.overdue_markets (
    chain_id          bigint NOT NULL,
    market_id         bigint NOT NULL,
    end_time          timestamptz NOT NULL,
    reason            text   NOT NULL,
    first_reported_at timestamptz NOT NULL DEFAULT now(),
    last_reported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, market_id)
);

CREATE TABLE keeper.job_runs (
    id          bigserial PRIMARY KEY,
    chain_id    bigint NOT NULL,
    job         text   NOT NULL,
    epoch       bigint,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    outcome     text   NOT NULL CHECK (outcome IN ('ok', 'failed')),
    detail      jsonb  NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX job_runs_recent ON keeper.job_runs (chain_id, job, started_at DESC);

GRANT USAGE ON SCHEMA keeper TO analyst, api;
GRANT SELECT ON keeper.txs, keeper.resolution_queue, keeper.overdue_markets, keeper.job_runs TO analyst, api;
