-- One-off requests name the resolution steps too (sql/034 added the finalize and expire jobs): an
-- operator's `run --once --jobs finalize` while a daemon leads asks the leader for exactly that step.
ALTER TABLE keeper.job_requests DROP CONSTRAINT job_requests_job_check,
    ADD CONSTRAINT job_requests_job_check
        CHECK (job IN ('resolve', 'finalize', 'expire', 'distribute', 'aggregate', 'warm', 'notify', 'track'));
