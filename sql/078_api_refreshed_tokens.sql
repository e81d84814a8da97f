-- Refresh rotates tokens: the jti of every token a refresh replaced, until that token's exp. A second
-- refresh of the same token is refused (review h3 F1: a leaked token, an admin's too, could be
-- renewed every 15 minutes for ever). Rows past their exp are deleted by the next refresh.
CREATE TABLE api.refreshed_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX refreshed_tokens_expiry ON api.refreshed_tokens (expires_at);
GRANT SELECT, INSERT, DELETE ON api.refreshed_tokens TO api;
