-- A replacement re-checks the contract first; when the call would now revert (e.g. someone else
-- resolved the market while our transaction was stuck) the nonce is freed with a zero-value
-- self-transfer instead of bumping a doomed call. Such attempts are flagged here.
ALTER TABLE keeper.tx_attempts ADD COLUMN is_cancel boolean NOT NULL DEFAULT false;
