-- A transaction that reverted on chain did nothing: it no longer holds its job key, so an operator's
-- new queue entry for the market can be sent (it was accepted, then skipped as already_in_ledger for
-- good, and the market later expired INVALID). The keeper's automatic jobs still treat a reverted key
-- as done (their queries include it): no automatic retry burns gas on a transaction that reverts.
DROP INDEX keeper.txs_job_key;
CREATE UNIQUE INDEX txs_job_key ON keeper.txs (chain_id, job_key) WHERE status NOT IN ('dropped', 'reverted');
