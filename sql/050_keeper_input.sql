-- Keeper input is validated where it enters (core/resolution.py for the CLI and the admin API) AND
-- here, so no bad row can exist whoever writes it (psql, a script, an old client):
--   * market ids are non-negative (the contract's ids are uint256; bigint holds every id we index)
--   * a reason and a requester are non-blank text of bounded length
--   * a price-feed rule's feed is a 20-byte address
-- The constraints are NOT VALID: enforced for every row inserted or updated from now on, not checked
-- against history. Queued rows written before this migration with a negative market id are closed
-- (`failed`, with the reason) so nothing ever updates them again; no row is deleted (audit trail).

UPDATE keeper.resolution_queue
   SET status = 'failed', status_reason = 'invalid entry closed by migration 050: market_id < 0', updated_at = now()
 WHERE market_id < 0 AND status IN ('queued', 'sent');

ALTER TABLE keeper.resolution_queue
    ADD CONSTRAINT resolution_queue_market_id CHECK (market_id >= 0) NOT VALID,
    ADD CONSTRAINT resolution_queue_reason CHECK (length(btrim(reason)) BETWEEN 1 AND 500) NOT VALID,
    ADD CONSTRAINT resolution_queue_requested_by CHECK (length(btrim(requested_by)) BETWEEN 1 AND 200) NOT VALID;

-- Why a rule was bound (the CLI's --reason, the admin API's `reason`); older rules have none.
ALTER TABLE keeper.price_feed_rules ADD COLUMN reason text;
ALTER TABLE keeper.price_feed_rules
    ADD CONSTRAINT price_feed_rules_market_id CHECK (market_id >= 0) NOT VALID,
    ADD CONSTRAINT price_feed_rules_feed CHECK (length(feed) = 20) NOT VALID,
    ADD CONSTRAINT price_feed_rules_created_by CHECK (length(btrim(created_by)) BETWEEN 1 AND 200) NOT VALID,
    ADD CONSTRAINT price_feed_rules_reason CHECK (reason IS NULL OR length(btrim(reason)) BETWEEN 1 AND 500);

-- One-off jobs asked of the running leader (`python -m keeper run --once --jobs distribute` while a
-- daemon holds the leader lock): the leader picks a request up within keeper.leader_poll_s, runs the
-- job under its lock and fencing epoch, and records the outcome here; the CLI waits for it.
CREATE TABLE keeper.job_requests (
    id           bigserial PRIMARY KEY,
    chain_id     bigint NOT NULL,
    job          text   NOT NULL CHECK (job IN ('resolve', 'distribute', 'aggregate', 'warm', 'notify', 'track')),
    requested_by text   NOT NULL CHECK (length(btrim(requested_by)) BETWEEN 1 AND 200),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    epoch        bigint,                       -- the leader epoch that ran it
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('ok', 'failed')),
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX job_requests_open ON keeper.job_requests (chain_id, id) WHERE finished_at IS NULL;

-- Operators over HTTP (api/routes/admin.py): the API's role may queue and cancel resolutions and bind
-- price-feed rules — nothing else in schema keeper. Column-level UPDATE keeps the ledger columns
-- (tx_id, sent/resolved transitions) the keeper's alone.
GRANT INSERT ON keeper.resolution_queue TO api;
GRANT UPDATE (status, cancelled_by, cancelled_at, cancel_reason, updated_at) ON keeper.resolution_queue TO api;
GRANT USAGE ON SEQUENCE keeper.resolution_queue_id_seq TO api;
GRANT SELECT, INSERT, UPDATE ON keeper.price_feed_rules TO api;
GRANT SELECT ON keeper.job_requests TO api;  -- not analyst: sql/070 keeps analysts off keeper.*
