-- The analysts' login (issue 18): role `analyst` logs in and reads the documented surface only —
-- the views in schema public and the aggregates in agg — never the indexer's idx.* internals, the
-- keeper's ledger or the API's own tables. Its password comes from the environment
-- (GL_ANALYST_PASSWORD, set by `python -m indexer migrate`), never from a file in this repository.
-- Numbered after every other migration so that grants made by earlier files are revoked here.
-- Roles belong to the cluster: migrations of two databases at once (parallel test workers, two
-- chains) may both set LOGIN; the loser's "tuple concurrently updated" means the winner did it.
DO $$
BEGIN
    IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'analyst') THEN
        ALTER ROLE analyst LOGIN;
    END IF;
EXCEPTION WHEN internal_error THEN NULL;
END $$;
REVOKE ALL ON ALL TABLES IN SCHEMA idx FROM analyst;
REVOKE ALL ON SCHEMA idx FROM analyst;
REVOKE ALL ON ALL TABLES IN SCHEMA keeper FROM analyst;
REVOKE ALL ON SCHEMA keeper FROM analyst;
REVOKE ALL ON ALL TABLES IN SCHEMA api FROM analyst;
REVOKE ALL ON SCHEMA api FROM analyst;
GRANT USAGE ON SCHEMA public, agg TO analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA agg TO analyst;
