-- The feed reads the highest outbox seq ever issued (idx.outbox_seq_seq.last_value) to refuse a resume
-- whose `since` this database never issued (a database rebuilt into another, or restored), even while
-- its outbox is empty or pruned; GRANT ... ON ALL TABLES did not cover the sequence.
GRANT SELECT ON SEQUENCE idx.outbox_seq_seq TO api;
