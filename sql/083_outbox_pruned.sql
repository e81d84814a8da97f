-- The highest outbox seq each chain has lost to a delete (retention, or by hand) (review h11). A feed
-- resume with `since` below it may have missed deleted rows of the chain and is refused
-- (since_too_old); one at or above it has every later row of its chain still in the outbox. Before,
-- the feed compared `since + 1` with the chain's oldest row: a chain whose every row was pruned had no
-- oldest row and a resume looked complete while it had missed them, and with several chains (seqs are
-- shared) a resume was refused for seqs of other chains.
CREATE TABLE idx.outbox_pruned (
    chain_id bigint PRIMARY KEY,
    pruned_through bigint NOT NULL
);
GRANT SELECT ON idx.outbox_pruned TO api;

-- Kept by a trigger, so that every path that deletes outbox rows moves it, in the same transaction.
CREATE FUNCTION idx.outbox_pruned_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO idx.outbox_pruned (chain_id, pruned_through)
    SELECT chain_id, max(seq) FROM gone GROUP BY chain_id
    ON CONFLICT (chain_id) DO UPDATE
        SET pruned_through = greatest(idx.outbox_pruned.pruned_through, EXCLUDED.pruned_through);
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_pruned_mark AFTER DELETE ON idx.outbox
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION idx.outbox_pruned_mark();

-- What was deleted before this table existed is not known: the row before each chain's oldest stands
-- for it (the comparison the feed made until now).
INSERT INTO idx.outbox_pruned (chain_id, pruned_through)
SELECT chain_id, min(seq) - 1 FROM idx.outbox GROUP BY chain_id HAVING min(seq) > 1;
