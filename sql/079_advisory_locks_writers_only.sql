-- Review h4: advisory locks are the writers' (the migration lock, the indexer's writer lock, the outbox
-- lock every indexer batch and keeper notification takes, the keeper's leader lock), and their keys are
-- constants in the source. PostgreSQL lets every role take any advisory lock, so one statement of a
-- read-only role (analyst, api) — SELECT pg_advisory_lock(<the outbox key>) — stopped indexing, kept
-- every keeper a standby, or hung migrations. Only the owners of the idx and keeper schemas (the
-- writers' login) keep EXECUTE on the functions that take advisory locks now.
-- Function privileges can be changed by a superuser only: run by another role this does nothing but
-- say so (docs/operations.md gives the statements to run once as a superuser).
DO $$
DECLARE
    f regprocedure;
    w text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE WARNING 'advisory locks stay open to every role: run sql/079 as a superuser (docs/operations.md)';
        RETURN;
    END IF;
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname LIKE 'pg%advisory%'
                AND p.proname NOT LIKE '%unlock%' LOOP  -- releasing one's own locks stays open: pools reset with
                                                         -- pg_advisory_unlock_all()
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        FOR w IN SELECT DISTINCT quote_ident(r.rolname) FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
                  WHERE n.nspname IN ('idx', 'keeper')
                 UNION SELECT quote_ident(current_user::text) LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f, w);
        END LOOP;
    END LOOP;
END $$;

-- Analysts' sessions are bounded (review h4): a forgotten open transaction held table locks (migrations
-- gave up) and vacuum (idx.undo and idx.outbox bloated), a runaway query ran for ever, and a pool of
-- analyst connections could take every connection the indexer and the keeper need. Role settings
-- belong to the cluster: two databases migrating at once may race ("tuple concurrently updated").
DO $$
BEGIN
    ALTER ROLE analyst SET statement_timeout = '60s';
    ALTER ROLE analyst SET idle_in_transaction_session_timeout = '60s';
    ALTER ROLE analyst SET temp_file_limit = '1GB';
    ALTER ROLE analyst CONNECTION LIMIT 20;
EXCEPTION
    WHEN internal_error THEN NULL;
    WHEN insufficient_privilege THEN  -- temp_file_limit is a superuser's setting
        RAISE WARNING 'analyst session limits not set: run sql/079 as a superuser (docs/operations.md)';
END $$;
