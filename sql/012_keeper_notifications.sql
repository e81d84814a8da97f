-- Notifications the keeper emits (the indexer derives event notifications in idx.notifications;
-- these are time-based ones no event announces). One per (kind, market, recipient), ever.
CREATE TABLE keeper.notifications (
    id         bigserial PRIMARY KEY,
    chain_id   bigint NOT NULL,
    recipient  bytea  NOT NULL,
    kind       text   NOT NULL CHECK (kind IN ('market_ending_soon')),
    market_id  bigint,
    title      text   NOT NULL,
    message    text   NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain_id, kind, market_id, recipient)
);
CREATE INDEX notifications_recipient ON keeper.notifications (chain_id, recipient, created_at DESC);

GRANT SELECT ON keeper.notifications TO analyst, api;
