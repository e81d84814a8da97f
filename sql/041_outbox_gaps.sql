-- A stretch indexed without per-event outbox messages (more than indexer.outbox_max_lag blocks
-- behind the head) is announced by ONE outbox message, "chain:gap", when the stretch ends. While it is
-- open its extent lives here, written in each batch's transaction, so a restart in the middle of
-- the stretch still announces all of it.
CREATE TABLE idx.outbox_gaps (
    chain_id bigint PRIMARY KEY,
    from_block bigint NOT NULL,
    to_block bigint NOT NULL,
    events bigint NOT NULL
);
GRANT SELECT ON idx.outbox_gaps TO api;
