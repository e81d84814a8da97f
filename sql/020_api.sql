-- The read API's own tables (schema api). Everything else the API reads is idx.*, keeper.*, agg.*
-- through the read-only `api` role; these are the only rows it writes.

CREATE SCHEMA IF NOT EXISTS api;

-- Sign-In with Ethereum nonces: single use (deleted when consumed), short-lived.
CREATE TABLE api.siwe_nonces (
    nonce      text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX siwe_nonces_expiry ON api.siwe_nonces (expires_at);

-- Read marks, keyed by the notification's identity in idx.notifications (chain_id, block_number,
-- log_index, recipient) plus its kind. A reorg that removes a notification leaves an orphan mark
-- that matches nothing (a re-mined notification at the same position with the same kind shows as
-- read — harmless and documented in docs/api.md).
CREATE TABLE api.notification_reads (
    chain_id     bigint NOT NULL,
    recipient    bytea  NOT NULL,
    block_number bigint NOT NULL,
    log_index    int    NOT NULL,
    kind         text   NOT NULL,
    read_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, recipient, block_number, log_index, kind)
);

GRANT USAGE ON SCHEMA api TO api;
GRANT SELECT, INSERT, DELETE ON api.siwe_nonces TO api;
GRANT SELECT, INSERT ON api.notification_reads TO api;

-- Text search in market questions (GET /v1/markets?q=): a trigram index makes ILIKE '%…%' an
-- index scan instead of a scan of every market.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS markets_question_trgm ON idx.markets USING gin (question gin_trgm_ops);
