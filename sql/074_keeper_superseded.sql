-- A transaction that reverted (or was dropped) and whose job key an operator's new entry took
-- (sql/053) is marked superseded by the transaction that took it. If a reorg then brings the old
-- one back (pending again, or mined successfully on the new fork), it no longer competes for the job
-- key or its old queue entry: before, that update broke txs_job_key (or resolution_queue_active) and
-- failed every tracker pass, for every transaction.
ALTER TABLE keeper.txs ADD COLUMN superseded_by bigint REFERENCES keeper.txs (id);
DROP INDEX keeper.txs_job_key;
CREATE UNIQUE INDEX txs_job_key ON keeper.txs (chain_id, job_key)
    WHERE status NOT IN ('dropped', 'reverted') AND superseded_by IS NULL;
